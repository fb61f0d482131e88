"""The lab: named experiments and sweeps, the records of runs in results folders, the transfer
study, the speed runs' records, launching several processes, and the command line.

Everything that writes or reads a results folder (the book's ``results/``, a reader's own) is
here. The lab imports the core
(:mod:`resnet_lab`), never the book's instruments (:mod:`resnet_lab.book`).
"""
