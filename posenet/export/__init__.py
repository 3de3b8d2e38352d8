"""Export of a trained network to the MAX78000: integer checkpoint, ai8x-synthesis YAML, standalone C.

Modules, one job each:

* ``integer``: the chip's integer weights and the checkpoint ai8x-synthesis reads;
* ``network_yaml``: the network description, written from the budget checker's placement plan;
* ``sample``: the sample input and the integer simulation's expected outputs;
* ``c_source`` (+ the fixed sources in ``csrc/``): the standalone C99 project;
* ``host``: building and running that C here; ``izer``: running ai8xize.py from a user's checkout;
* ``bundle``: one export, all of the above in order.
"""
