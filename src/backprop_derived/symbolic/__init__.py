"""SymPy side of backprop-derived: checked steps, catalog, printers, codegen.

The runtime (``backprop_derived.Network``) never imports this package.
"""
