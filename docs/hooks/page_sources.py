"""The works each page takes something from: author, title, link, and what was taken.

The build hook appends a "Sources" section to every page listed here, so that a
page that derives something names where its definition, notation or numbers
come from. The three tutorials the scalar and vectorized pages follow have
their own page (docs/sources.md, equation by equation); here they are named
once per page with a link to that list.

Each entry: (authors, year, title, where published, URL, what this page took).
"""

from __future__ import annotations

import html

CLEVER_MACHINE = (
    "Dustin Stansbury", 2014,
    "Derivation: Error Backpropagation & Gradient Descent for Neural Networks",
    "The Clever Machine (blog)",
    "https://theclevermachine.wordpress.com/2014/09/06/"
    "derivation-error-backpropagation-gradient-descent-for-neural-networks/",
)
CLEVER_MACHINE_ACTIVATIONS = (
    "Dustin Stansbury", 2014,
    "Derivation: Derivatives for Common Neural Network Activation Functions",
    "The Clever Machine (blog)",
    "https://theclevermachine.wordpress.com/2014/09/08/"
    "derivation-derivatives-for-common-neural-network-activation-functions/",
)
COURSERA = (
    "Coursera ML wiki contributors (notes to Andrew Ng's Machine Learning course)", 2016,
    "ML:Neural Networks: Learning", "Coursera ML wiki, revision 34310",
    "https://share.coursera.org/wiki/index.php?title=ML:Neural_Networks:_Learning&oldid=34310",
)
EFAVDB = (
    "Cathy Yeh", 2019, "Backpropagation in neural networks", "EFAVDB (blog)",
    "https://www.efavdb.com/backpropagation-in-neural-networks",
)
NIELSEN_2 = (
    "Michael Nielsen", 2015, "How the backpropagation algorithm works",
    "Neural Networks and Deep Learning, chapter 2",
    "http://neuralnetworksanddeeplearning.com/chap2.html",
)
NIELSEN_3 = (
    "Michael Nielsen", 2015, "Improving the way neural networks learn",
    "Neural Networks and Deep Learning, chapter 3",
    "http://neuralnetworksanddeeplearning.com/chap3.html",
)
CS231N_BACKPROP = (
    "Andrej Karpathy and the CS231n course staff", 2016, "Backpropagation, Intuitions",
    "CS231n: Convolutional Neural Networks for Visual Recognition, Stanford course notes",
    "https://cs231n.github.io/optimization-2/",
)
MAZUR = (
    "Matt Mazur", 2015, "A Step by Step Backpropagation Example", "mattmazur.com (blog)",
    "https://mattmazur.com/2015/03/17/a-step-by-step-backpropagation-example/",
)
VASWANI = (
    "Ashish Vaswani, Noam Shazeer, Niki Parmar, Jakob Uszkoreit, Llion Jones, "
    "Aidan N. Gomez, Łukasz Kaiser, Illia Polosukhin", 2017, "Attention Is All You Need",
    "Advances in Neural Information Processing Systems 30 (NeurIPS 2017); arXiv:1706.03762",
    "https://arxiv.org/abs/1706.03762",
)
PYTORCH_MHA = (
    "PyTorch contributors", 2024, "torch.nn.MultiheadAttention", "PyTorch documentation",
    "https://pytorch.org/docs/stable/generated/torch.nn.MultiheadAttention.html",
)
SRIVASTAVA = (
    "Nitish Srivastava, Geoffrey Hinton, Alex Krizhevsky, Ilya Sutskever, "
    "Ruslan Salakhutdinov", 2014,
    "Dropout: A Simple Way to Prevent Neural Networks from Overfitting",
    "Journal of Machine Learning Research 15(56), 1929–1958",
    "https://jmlr.org/papers/v15/srivastava14a.html",
)
BENGIO_LM = (
    "Yoshua Bengio, Réjean Ducharme, Pascal Vincent, Christian Jauvin", 2003,
    "A Neural Probabilistic Language Model",
    "Journal of Machine Learning Research 3, 1137–1155",
    "https://www.jmlr.org/papers/v3/bengio03a.html",
)
HE = (
    "Kaiming He, Xiangyu Zhang, Shaoqing Ren, Jian Sun", 2016,
    "Deep Residual Learning for Image Recognition",
    "IEEE Conference on Computer Vision and Pattern Recognition (CVPR 2016); arXiv:1512.03385",
    "https://arxiv.org/abs/1512.03385",
)
GOODFELLOW_9 = (
    "Ian Goodfellow, Yoshua Bengio, Aaron Courville", 2016, "Convolutional Networks",
    "Deep Learning (MIT Press), chapter 9",
    "https://www.deeplearningbook.org/contents/convnets.html",
)
DUMOULIN = (
    "Vincent Dumoulin, Francesco Visin", 2016,
    "A guide to convolution arithmetic for deep learning", "arXiv:1603.07285",
    "https://arxiv.org/abs/1603.07285",
)
WERBOS = (
    "Paul J. Werbos", 1990, "Backpropagation through time: what it does and how to do it",
    "Proceedings of the IEEE 78(10), 1550–1560", "https://doi.org/10.1109/5.58337",
)
PASCANU = (
    "Razvan Pascanu, Tomas Mikolov, Yoshua Bengio", 2013,
    "On the difficulty of training recurrent neural networks",
    "International Conference on Machine Learning (ICML 2013); arXiv:1211.5063",
    "https://arxiv.org/abs/1211.5063",
)
IOFFE = (
    "Sergey Ioffe, Christian Szegedy", 2015,
    "Batch Normalization: Accelerating Deep Network Training by Reducing Internal "
    "Covariate Shift", "International Conference on Machine Learning (ICML 2015); "
    "arXiv:1502.03167", "https://arxiv.org/abs/1502.03167",
)
BA = (
    "Jimmy Lei Ba, Jamie Ryan Kiros, Geoffrey E. Hinton", 2016, "Layer Normalization",
    "arXiv:1607.06450", "https://arxiv.org/abs/1607.06450",
)
GLOROT = (
    "Xavier Glorot, Yoshua Bengio", 2010,
    "Understanding the difficulty of training deep feedforward neural networks",
    "Proceedings of the 13th International Conference on Artificial Intelligence and "
    "Statistics (AISTATS 2010), PMLR 9, 249–256",
    "https://proceedings.mlr.press/v9/glorot10a.html",
)
PYTORCH_CONV = (
    "PyTorch contributors", 2024, "torch.nn.Conv1d", "PyTorch documentation",
    "https://pytorch.org/docs/stable/generated/torch.nn.Conv1d.html",
)
PYTORCH_POOL = (
    "PyTorch contributors", 2024, "torch.nn.MaxPool1d", "PyTorch documentation",
    "https://pytorch.org/docs/stable/generated/torch.nn.MaxPool1d.html",
)
PYTORCH_RNN = (
    "PyTorch contributors", 2024, "torch.nn.RNN", "PyTorch documentation",
    "https://pytorch.org/docs/stable/generated/torch.nn.RNN.html",
)
CHO = (
    "Kyunghyun Cho, Bart van Merriënboer, Caglar Gulcehre, Dzmitry Bahdanau, Fethi Bougares, "
    "Holger Schwenk and Yoshua Bengio", 2014,
    "Learning phrase representations using RNN encoder–decoder for statistical machine "
    "translation", "Proceedings of EMNLP 2014, 1724–1734", "https://doi.org/10.3115/v1/D14-1179",
)
HOCHREITER = (
    "Sepp Hochreiter and Jürgen Schmidhuber", 1997, "Long short-term memory",
    "Neural Computation 9(8), 1735–1780", "https://doi.org/10.1162/neco.1997.9.8.1735",
)
GERS = (
    "Felix A. Gers, Jürgen Schmidhuber and Fred Cummins", 2000,
    "Learning to forget: continual prediction with LSTM", "Neural Computation 12(10), 2451–2471",
    "https://doi.org/10.1162/089976600300015015",
)
PYTORCH_GRU = (
    "PyTorch contributors", 2024, "torch.nn.GRU", "PyTorch documentation",
    "https://pytorch.org/docs/stable/generated/torch.nn.GRU.html",
)
PYTORCH_LSTM = (
    "PyTorch contributors", 2024, "torch.nn.LSTM", "PyTorch documentation",
    "https://pytorch.org/docs/stable/generated/torch.nn.LSTM.html",
)

# page source -> [(work, what the page took from it)]
SOURCES: dict[str, list[tuple[tuple, str]]] = {
    "derivations/01_activations.py": [
        (CLEVER_MACHINE_ACTIVATIONS, "the derivatives of the sigmoid and tanh written "
         "through the activation itself, g′ = g(1 − g) and 1 − g², which this page proves"),
        (CLEVER_MACHINE, "the letters z for a pre-activation and a = g(z) for an activation"),
    ],
    "derivations/02_output_layer.py": [
        (CLEVER_MACHINE, "the network, the squared error of eq. (1) and the steps of "
         "eq. (2)–(5), followed one by one"),
        (EFAVDB, "the batch form at the end of the page: its weight and bias gradients"),
    ],
    "derivations/03_hidden_layer.py": [
        (CLEVER_MACHINE, "the steps of eq. (7)–(11), followed one by one"),
        (EFAVDB, "the batch form at the end of the page: the error passed back through "
         "Wᵀ, then through g′"),
    ],
    "derivations/04_biases.py": [
        (CLEVER_MACHINE, "eq. (6) and (12), the bias gradients"),
        (EFAVDB, "the bias gradient of a batch: dZ summed over the examples"),
    ],
    "derivations/05_any_depth.py": [
        (CLEVER_MACHINE, "the one-hidden-layer result that the induction starts from"),
        (COURSERA, "the Backpropagation Algorithm section, the Coursera form of the recurrence"),
    ],
    "derivations/06_vectorized.py": [
        (EFAVDB, "its four vectorized equations and their letters dW, db, dA, dZ, "
         "transposed to batch-first arrays"),
    ],
    "derivations/07_losses_x_activations.py": [
        (COURSERA, "the summed logistic cost and its output error a − y"),
        (CLEVER_MACHINE, "the squared error of eq. (1) and the output delta of eq. (5)"),
        (EFAVDB, "the cost as the mean of the per-example losses"),
    ],
    "derivations/08_regularization.py": [
        (COURSERA, "the Cost Function section: the penalty (λ/2m) Σ Θ², biases left out"),
    ],
    "derivations/09_errata.py": [
        (CLEVER_MACHINE, "errata 1–4, each quoted as published"),
        (COURSERA, "errata 5–7, each quoted as published"),
    ],
    "derivations/10_normalization.py": [
        (IOFFE, "the definition of batch norm (mean and biased variance over the "
         "batch, ε, the scale γ and shift β) and the running statistics of evaluation mode"),
        (BA, "the definition of layer norm: the same statistics over the features of "
         "one example"),
    ],
    "derivations/11_attention.py": [
        (VASWANI, "scaled dot-product attention, softmax(Q Kᵀ / √d_k) V, its letters "
         "Q, K, V and the mask that hides later positions; one head, no biases"),
        (VASWANI, "multi-head attention (section 3.2.2): h heads of d_model / h "
         "features each, run in parallel, concatenated and projected by W^O"),
        (PYTORCH_MHA, "the contiguous split of q = x Wqᵀ into heads, the (d_model, d_model) "
         "weights without biases, batch_first, and the float attn_mask added to the scores"),
    ],
    "derivations/12_dropout_embedding_residual.py": [
        (SRIVASTAVA, "dropout. The paper's p is the probability of keeping a unit and it "
         "scales the weights at test time; this page's p is the probability of dropping "
         "one, and it scales by 1/(1 − p) while training (inverted dropout)"),
        (BENGIO_LM, "the embedding as a learned table with one row per word, read at "
         "the word's index"),
        (HE, "the residual block y = F(x) + x with an identity shortcut"),
    ],
    "derivations/13_convolution.py": [
        (GOODFELLOW_9, "that the layer computes a cross-correlation (section 9.1) and "
         "the gradients with respect to kernel and input (section 9.5)"),
        (DUMOULIN, "the output length L − k + 1 of stride 1 without padding, and the "
         "input gradient as a full correlation with the flipped kernel"),
        (PYTORCH_CONV, "the layout (batch, channels, length) and the weight shape "
         "(C_out, C_in, k), so that results can be compared with it"),
    ],
    "derivations/15_pooling.py": [
        (GOODFELLOW_9, "pooling as a summary of a neighbourhood (section 9.3)"),
        (DUMOULIN, "the output length ⌊(L − k)/s⌋ + 1 of a pooling window k with stride s"),
        (PYTORCH_POOL, "the layout (batch, channels, length), the stride defaulting to the "
         "window, and the gradient at a tie going to one element"),
    ],
    "derivations/16_gated_recurrence.py": [
        (CHO, "the gated recurrent unit: a reset gate, an update gate and the candidate state"),
        (HOCHREITER, "the LSTM cell: a memory c_t updated additively, read through gates"),
        (GERS, "the forget gate f, which the cell c_t = f c_{t−1} + i g uses"),
        (PYTORCH_GRU, "the GRU's equations, the reset gate scaling W_hn h + b_hn bias included, "
         "and the stacked weight_ih_l0 in gate order r, z, n"),
        (PYTORCH_LSTM, "the LSTM's equations and weight_ih_l0 in gate order i, f, g, o"),
    ],
    "derivations/14_recurrence.py": [
        (WERBOS, "backpropagation through time: the chain rule on the network unrolled "
         "over its steps, run backwards from the last step"),
        (PYTORCH_RNN, "the form h_t = tanh(x_t W_ihᵀ + h_{t−1} W_hhᵀ + b) and the names "
         "W_ih, W_hh"),
        (PASCANU, "background only: why the repeated factor W_hh makes gradients through "
         "many steps vanish or explode"),
    ],
    "lessons/numeric_pass.py": [
        (MAZUR, "the network and every starting number: inputs 0.05 and 0.10, the eight "
         "weights 0.15 to 0.55, biases 0.35 and 0.60, targets 0.01 and 0.99, so that each "
         "printed value can be checked against his post"),
        (CLEVER_MACHINE, "the letters of the scalar derivation"),
    ],
    "intuition.md": [
        (CS231N_BACKPROP, "the picture of gates that distribute (add), swap (multiply) "
         "and route (max) the gradient; the numbers of our figure are our own"),
        (CLEVER_MACHINE, "the output delta δ_k = (a_k − t_k) g′(z_k) of eq. (5) that the "
         "page reads in words"),
        (COURSERA, "the Backpropagation Intuition and Random Initialization sections"),
        (GLOROT, "the initialization scale √6 / √(n_in + n_out) and why it keeps the "
         "signal's variance roughly constant"),
    ],
    "lessons/common_mistakes.py": [
        (NIELSEN_2, "the equations whose easy-to-write wrong versions the page refutes"),
        (COURSERA, "the accumulator Δ += δ aᵀ and the penalty (λ/2m) Σ W² of the "
         "Backpropagation Algorithm and Cost Function sections"),
    ],
    "practice/gradient_checking.py": [
        (COURSERA, "the Gradient Checking section: the two-sided difference with "
         "ε = 10⁻⁴, used once before training"),
    ],
    "practice/initialization.py": [
        (COURSERA, "the Random Initialization section: weights uniform in [−ε, ε] and "
         "the warning against starting from zeros"),
        (GLOROT, "the rule ε = √6 / √(n_in + n_out), their normalized initialization, "
         "and the variance argument behind it"),
    ],
    "practice/putting_it_together.py": [
        (COURSERA, "the Putting it Together section: its six steps of training, run "
         "here on the runtime"),
    ],
    "lessons/sigma_prime.py": [
        (NIELSEN_3, "the argument this lesson checks: with cross-entropy the σ′ factor "
         "cancels, so a saturated wrong output still learns quickly"),
    ],
}


def _work_html(work: tuple, took: str, sources_href: str) -> str:
    authors, year, title, venue, url = work
    took = html.escape(took)
    return (f"<li>{html.escape(authors)} ({year}). "
            f'<a href="{html.escape(url)}">“{html.escape(title)}”</a>. '
            f"<em>{html.escape(venue)}</em>. <strong>Taken here:</strong> {took}.</li>")


def section_html(page_src: str, sources_href: str) -> str | None:
    """The "Sources" section of a page, or None if the page has no entry."""
    entries = SOURCES.get(page_src)
    if not entries:
        return None
    items = "".join(_work_html(work, took, sources_href) for work, took in entries)
    tutorial = ""
    if any(work in (CLEVER_MACHINE, COURSERA, EFAVDB) for work, _ in entries):
        tutorial = (f'<p>The equations of the tutorials, one by one, and how this site numbers '
                    f'them: <a href="{sources_href}">Sources</a>.</p>')
    return (f'<h2 id="sources">Sources<a class="headerlink" href="#sources" '
            f'title="Permanent link">¶</a></h2><ul class="page-sources">{items}</ul>{tutorial}')
