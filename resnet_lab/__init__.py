"""resnet_lab: residual networks from scratch, the package behind the resnet-lab book.

Kept light on purpose: ``import resnet_lab`` pulls in torch only. matplotlib and ipywidgets
are imported inside :mod:`resnet_lab.book.viz` and :mod:`resnet_lab.book.widgets`.
"""

__version__ = "0.1.0"
