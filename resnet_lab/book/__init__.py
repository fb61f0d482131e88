"""The book's instruments: what the chapters draw and measure with.

Figures (:mod:`~resnet_lab.book.viz`, :mod:`~resnet_lab.book.diagrams`,
:mod:`~resnet_lab.book.mistakes`), the explorers behind the sliders
(:mod:`~resnet_lab.book.widgets`), analysis and probes of networks, the article's network and
its mistakes, the run profiles, and the exercises' checks. This floor imports the core and the
lab; nothing below imports it, so ``import resnet_lab`` never pulls in matplotlib or ipywidgets.
"""
