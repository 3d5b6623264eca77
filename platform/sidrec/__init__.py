"""sidrec: generative recommenders over semantic IDs, trained and served on Ray.

Stage packages (`data`, `eval`, `models`, ...) are importable and runnable in
one process without a Ray cluster; Ray glue lives in `sidrec.distributed`.
"""

__version__ = "0.1.0"
