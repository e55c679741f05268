"""The optimizers of optim.py, step for step against PyTorch, and their properties.

The reference numbers below were computed once with PyTorch 2.13.0 (CPU,
float64) by a script kept outside this repository: the same data and initial
weights as `problem()` (a 3-4-2 tanh/softmax network, six examples), the
same model written in torch (``cross_entropy`` of ``tanh(X W0^T + b0) W1^T +
b1``), and six full-batch steps of ``torch.optim.SGD/Adam/AdamW`` with the
settings of each case, ``torch.nn.utils.clip_grad_norm_`` before the step
and ``StepLR``/``CosineAnnealingLR`` stepped after it. Pinned: the loss
before each step and the final parameters, in the order W0, W1, b0, b1.
PyTorch is not a test dependency.
"""

import math

import numpy as np
import pytest

from backprop_derived import Network
from backprop_derived.layers import Activation, Dense, Sequential
from backprop_derived.optim import (
    SGD,
    Adam,
    AdamW,
    CosineAnnealingLR,
    LambdaLR,
    StepLR,
    clip_grad_norm,
)

TORCH = {
    "sgd": (
        [0.8490439228198489, 0.6475734017773181, 0.5308964722663926, 0.44320681249324995, 0.3689605013475212, 0.3059987223957755],
        [-0.6712678368658925, -0.7543224709298578, -0.8514155835517646, 0.4437998157479148, 0.31150345524883194, 0.4441240266150606, 0.7875580603763287, 0.5908231653011365, -0.9209407090582049, -1.2069115083062023, 0.3466082337363499, -0.6536519048349038, -0.11667322774278241, -0.2429197802504421, 0.26976167962465214, -1.4922538646390038, 0.5408444976282265, 0.13672258447371183, -0.19361701426682756, 0.31624831545369686, 0.30972361428856854, 0.8101361406106996, 0.10371846285656691, 0.31385314421836913, 0.48906444155070095, -0.5141400438517998]),
    "sgd_momentum_dampening_wd": (
        [0.8490439228198489, 0.7171264656072064, 0.5615962926651757, 0.43053859739815353, 0.3212310640491152, 0.22701480180132616],
        [-0.6628777732350076, -0.5417747593102121, -0.6474851547236714, 0.010044174664642502, 0.375260518235916, 0.3758836141209378, 0.4998040630236734, 0.49097579588754214, -0.7246548638935066, -1.152499840692649, 0.2329215803719386, -0.5476112645765518, -0.21455637306335792, 0.005672939052007542, 0.5529363737557542, -1.6035160978282652, 0.5460263310242008, -0.08866106794904242, -0.49343288821342335, 0.6845229042169962, 0.27155515546954906, 0.8897873965622294, 0.1689032549855419, 0.05759686388815611, 0.140590485694794, -0.16018589309433984]),
    "sgd_nesterov": (
        [0.8490439228198489, 0.6342953192841462, 0.4692039233068234, 0.3340411524994216, 0.22117891215294982, 0.14244717384896802],
        [-0.8286393396221504, -0.6957207598423973, -0.825841626807678, 0.22167958035492905, 0.3947886813281097, 0.4604285700615064, 0.7776304915079308, 0.5932621041302794, -0.9212555389994279, -1.4519751911267484, 0.29580669634755646, -0.6915804265955467, -0.24763796270049, -0.11743010488360799, 0.5547643248400452, -1.8721321222494793, 0.671809232585934, 0.011232909106877692, -0.4786196594822207, 0.6961265730641724, 0.3366088499866908, 0.9755444424698032, 0.13339234618852563, 0.0709863598035394, 0.32813583503826843, -0.35321143733936744]),
    "adam": (
        [0.8490439228198489, 0.7210336119215647, 0.611215594143323, 0.5193550657863314, 0.44362881426336226, 0.38146650493426876],
        [-0.7270443262965406, -0.550267090283288, -0.5956640762348282, 0.4939374073105019, 0.46298353630655337, 0.6790096032872126, 0.5560395723510754, 0.8411305878906427, -1.1219170954432152, -1.1652941148529834, 0.13055241145612878, -0.8760801076010748, -0.2177355728543312, -0.14007533778214923, 0.1269102404318894, -1.2385714600400028, 0.6419068427397753, 0.033878142005418964, -0.05076557507406482, 0.06256591085469537, 0.5432228621744654, 0.8474589301674028, 0.33100551555859165, 0.36037619604746784, 0.4421687632618888, -0.4672443655629877]),
    "adam_l2": (
        [0.8490439228198489, 0.7351814489830022, 0.6310861166297239, 0.5416675525406198, 0.4666875702525932, 0.4028572920457123],
        [-0.7298952989060838, -0.5509181670769803, -0.5980179946558746, 0.4902101521926137, 0.389585668711382, 0.12630000185816206, 0.5342918788055135, 0.2831813017308642, -0.6242977334491362, -1.0222393879027927, 0.13322153433200698, -0.3163484660338495, -0.22130381918296044, -0.1320240111848776, 0.12465210946967231, -1.215804279902975, 0.6448110506558189, 0.030661466736027508, -0.049645962328052365, 0.055805406139680366, 0.34899402088232767, 0.760053004890327, 0.2281694601476083, 0.36011568473678107, 0.44469560779516504, -0.4694789209455795]),
    "adamw": (
        [0.8490439228198489, 0.7209326226123, 0.6111597055286976, 0.5194426495908754, 0.44391217885565704, 0.38196151424725505],
        [-0.7253963637748077, -0.5480977206343713, -0.5933603942368564, 0.4920609563781299, 0.46196869118709577, 0.6773275785459784, 0.5540941167903202, 0.8388759097936769, -1.1188461309610398, -1.16233312175213, 0.12982366046592234, -0.873937966234439, -0.21760986360570816, -0.13918907754398785, 0.1269611098729913, -1.2353694681734555, 0.6405102092637275, 0.03331007538049705, -0.05104459315903533, 0.0628875285538058, 0.5420326155198768, 0.8452759587293123, 0.33027885896515746, 0.3587706462439965, 0.44038230475375706, -0.4653827742187959]),
    "adamw_clip": (
        [0.8490439228198489, 0.7180435352525713, 0.6092953285704396, 0.5212870578534851, 0.4510350394785981, 0.3948417610182507],
        [-0.6761893318082094, -0.48868716198168344, -0.5305558337949807, 0.42717426472259956, 0.4458154434166971, 0.6403078028348084, 0.49722052695434305, 0.7744548167689188, -1.0398117361870476, -1.0772677395030295, 0.10994849477331956, -0.8180366689261724, -0.2100952278899615, -0.10147029659013843, 0.1401991258118703, -1.1518690072808122, 0.5974943501381209, 0.004479521047438137, -0.07065557437929043, 0.07781343148381842, 0.5116746887182851, 0.7968072102819885, 0.31326146672088767, 0.3157489542885527, 0.37926606101964394, -0.4021678155960752]),
    "sgd_steplr": (
        [0.8490439228198489, 0.6475734017773181, 0.471186919548672, 0.40083963991417876, 0.33660751109502346, 0.30750495022850455],
        [-0.6324558621775137, -0.7698864740222848, -0.8592889019245284, 0.40594023999228057, 0.3311665797450391, 0.45064805576161465, 0.7232748348221267, 0.604750411982258, -0.924800660496208, -1.149418078765304, 0.3598334904304012, -0.6470960663858305, -0.08810510090872384, -0.21295626535822734, 0.2660118983326545, -1.4716890809084564, 0.5122763707941679, 0.10675906958149706, -0.18986723297482988, 0.2956835317231492, 0.304009121437744, 0.8469041905531, 0.1376046633802275, 0.369707349844661, 0.462992697014006, -0.488068299315105]),
    "adam_cosine": (
        [0.8490439228198489, 0.7210336119215647, 0.6231988999236587, 0.5649364340747663, 0.5367683436648837, 0.519924746537458],
        [-0.5923062573080797, -0.683965699483591, -0.7293922278258108, 0.6052030412098007, 0.3553667773936701, 0.5800439442883377, 0.6496527336434126, 0.7446754513408823, -1.0500452357101882, -1.030008115597986, 0.2591278109595903, -0.7646875734157367, -0.08300266477553804, -0.24492064513010353, 0.007099985105144455, -1.1081472932106153, 0.507173934660982, 0.13872344935337327, 0.06904468025268012, -0.06785825597469153, 0.41941263309130533, 0.7383494286841932, 0.23695180305067592, 0.49545033135898586, 0.5639093409238722, -0.5889849432249712]),
}

SETTINGS = {
    "sgd": (lambda: SGD(lr=0.5), {}),
    "sgd_momentum_dampening_wd": (
        lambda: SGD(lr=0.3, momentum=0.9, dampening=0.2, weight_decay=0.05), {}),
    "sgd_nesterov": (lambda: SGD(lr=0.3, momentum=0.8, nesterov=True), {}),
    "adam": (lambda: Adam(lr=0.05), {}),
    "adam_l2": (lambda: Adam(lr=0.05, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1), {}),
    "adamw": (lambda: AdamW(lr=0.05), {}),
    "adamw_clip": (lambda: AdamW(lr=0.05, weight_decay=0.3), {"clip_grad_norm": 0.05}),
    "sgd_steplr": (lambda: SGD(lr=0.5, momentum=0.5), {"lr_schedule": StepLR(2, gamma=0.5)}),
    "adam_cosine": (lambda: Adam(lr=0.05), {"lr_schedule": CosineAnnealingLR(4, eta_min=0.01)}),
}


def problem():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(6, 3))
    y = np.array([0, 1, 1, 0, 1, 0])
    return X, y, Network([3, 4, 2], ["tanh", "softmax"], seed=0)


def as_sequential(net):
    first, second = Dense(3, 4), Dense(4, 2)
    for layer, W, b in ((first, net.weights[0], net.biases[0]),
                        (second, net.weights[1], net.biases[1])):
        layer.params["W"][...] = W
        layer.params["b"][...] = b
    model = Sequential([first, Activation("tanh"), second, Activation("softmax")])
    return model, lambda: np.concatenate([p.ravel() for p in (
        first.params["W"], second.params["W"], first.params["b"], second.params["b"])])


def network_vector(net):
    return np.concatenate([p.ravel() for p in (*net.weights, *net.biases)])


@pytest.mark.parametrize("case", sorted(TORCH))
@pytest.mark.parametrize("model", ["Network", "Sequential"])
def test_steps_match_torch(case, model):
    X, y, net = problem()
    make, extra = SETTINGS[case]
    if model == "Network":
        fitted, vector = net, lambda: network_vector(net)
    else:
        fitted, vector = as_sequential(net)
    history = fitted.fit(X, y, optimizer=make(), epochs=6, batch_size=None, progress=False,
                         **extra)
    losses, final = TORCH[case]
    # float64 throughout; the sums are taken in another order than torch's
    np.testing.assert_allclose(history.loss, losses, rtol=1e-11)
    np.testing.assert_allclose(vector(), final, rtol=1e-9, atol=1e-12)


def test_named_optimizers_are_the_objects_with_pytorch_defaults():
    X, y, net = problem()
    _, _, other = problem()
    net.fit(X, y, optimizer="adamw", epochs=3, batch_size=None, progress=False)
    other.fit(X, y, optimizer=AdamW(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2),
              epochs=3, batch_size=None, progress=False)
    np.testing.assert_array_equal(network_vector(net), network_vector(other))
    assert (SGD().lr, Adam().lr, Adam().betas, Adam().eps, Adam().weight_decay,
            AdamW().weight_decay) == (1e-3, 1e-3, (0.9, 0.999), 1e-8, 0.0, 1e-2)


def test_adam_first_step_moves_each_parameter_by_lr_sign_g():
    # After one step m = (1 - b1) g and v = (1 - b2) g^2: the bias corrections make
    # the step lr g / (|g| + eps'), i.e. lr sign(g) where |g| >> eps.
    rng = np.random.default_rng(3)
    p = rng.normal(size=50)
    g = rng.normal(size=50)
    g[np.abs(g) < 1e-3] = 1e-3
    before = p.copy()
    Adam(lr=0.01).step([p], [g.copy()])
    np.testing.assert_allclose(before - p, 0.01 * np.sign(g), rtol=1e-5)


def test_adamw_decays_the_weights_and_adam_the_gradient():
    p = np.array([2.0])
    AdamW(lr=0.1, weight_decay=0.5).step([p], [np.array([0.0])])
    # a zero gradient: no Adam move (m = 0), only p (1 - lr wd)
    assert p[0] == pytest.approx(2.0 * (1 - 0.1 * 0.5), rel=1e-15)
    q = np.array([2.0])
    Adam(lr=0.1, weight_decay=0.5).step([q], [np.array([0.0])])
    # Adam: g = 0 + wd p = 1 > 0, the first step is lr sign(g)
    assert q[0] == pytest.approx(2.0 - 0.1, rel=1e-6)


def test_sgd_momentum_first_step_is_plain_and_then_accumulates():
    p, opt = np.array([0.0]), SGD(lr=1.0, momentum=0.5)
    for _ in range(3):
        opt.step([p], [np.array([1.0])])
    # buffers 1, 1.5, 1.75 (the first is g itself, as in PyTorch)
    assert p[0] == pytest.approx(-(1 + 1.5 + 1.75), rel=1e-15)


def test_clip_grad_norm_scales_to_the_global_norm():
    grads = [np.array([3.0, 0.0]), np.array([[0.0], [4.0]])]
    total = clip_grad_norm(grads, 1.0)
    assert total == 5.0
    new_norm = math.sqrt(sum(float(np.sum(g * g)) for g in grads))
    assert new_norm == pytest.approx(5.0 / (5.0 + 1e-6), rel=1e-12)  # max_norm / (total + eps)
    small = [np.array([0.1])]
    clip_grad_norm(small, 1.0)
    assert small[0][0] == 0.1


def test_schedules_follow_their_formulas():
    step = StepLR(3, gamma=0.1)
    assert [step(e, 1.0) for e in range(7)] == pytest.approx(
        [1, 1, 1, 0.1, 0.1, 0.1, 0.01])
    cosine = CosineAnnealingLR(10, eta_min=0.1)
    assert cosine(0, 1.0) == 1.0 and cosine(10, 1.0) == pytest.approx(0.1)
    assert cosine(5, 1.0) == pytest.approx(0.55)
    assert LambdaLR(lambda e: 0.5 ** e)(3, 2.0) == 0.25


def test_fit_records_the_scheduled_rates():
    X, y, net = problem()
    history = net.fit(X, y, optimizer="sgd", lr=0.4, epochs=5, batch_size=None,
                      lr_schedule=StepLR(2, 0.5), progress=False)
    assert history.lr == pytest.approx([0.4, 0.4, 0.2, 0.2, 0.1])


def test_an_optimizer_object_continues_across_fits():
    X, y, once = problem()
    _, _, twice = problem()
    once.fit(X, y, optimizer=Adam(lr=0.05), epochs=4, batch_size=None, progress=False)
    opt = Adam(lr=0.05)
    twice.fit(X, y, optimizer=opt, epochs=2, batch_size=None, progress=False)
    twice.fit(X, y, optimizer=opt, epochs=2, batch_size=None, progress=False)
    np.testing.assert_allclose(network_vector(twice), network_vector(once), rtol=1e-13)


@pytest.mark.parametrize("make, message", [
    (lambda: SGD(lr=0.0), "lr"),
    (lambda: SGD(momentum=-0.1), "momentum"),
    (lambda: SGD(nesterov=True), "Nesterov"),
    (lambda: Adam(betas=(0.9,)), "betas"),
    (lambda: Adam(betas=(0.9, 1.0)), "betas"),
    (lambda: AdamW(weight_decay=-1), "weight_decay"),
    (lambda: StepLR(0), "step_size"),
    (lambda: CosineAnnealingLR(0), "T_max"),
])
def test_bad_settings_are_named(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_settings_of_an_object_are_not_also_taken_from_fit():
    X, y, net = problem()
    with pytest.raises(ValueError, match="set it on the object"):
        net.fit(X, y, optimizer=Adam(), lr=0.1, progress=False)
    with pytest.raises(ValueError, match="learning_rate given to fit together"):
        net.fit(X, y, optimizer=SGD(), learning_rate=0.1, progress=False)
