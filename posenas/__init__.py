"""posenas: hardware-aware architecture search and compression of pose networks for the MAX78000.

The pipeline runs one way, each stage a sub-package that imports only the ones before it:

* ``posenas.space``: architecture specs, the seed baselines, the search space and its sampling;
* ``posenas.budgets``: device descriptions, izer's placement rules, the budget checker and cost models;
* ``posenas.posenet``: pose data (``posenet.pose``) and networks, training and export (``posenet.nets``);
* ``posenas.search``: the study engine, reports and plots, and the command line (``search.commands``).

``posenas.errors`` holds the one exception root every stage raises from, and the exit codes.
"""

__version__ = "0.1.0"
