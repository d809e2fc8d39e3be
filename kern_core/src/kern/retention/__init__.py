"""Retention: what kern keeps, declared once, applied in bounded batches with a receipt.

>>> from kern.retention import RetentionPolicy
>>> db.retention = RetentionPolicy(runs_days=30, idle_session_days=180)
>>> receipt = db.apply_retention()          # or: kern retention --dry-run
>>> receipt.deleted
{'sessions': 3, 'runs': 1290}

docs/lifecycle.md ("Retention") has the rules every backend keeps and how each applies them.
"""

from kern.retention.policy import RetentionPolicy
from kern.retention.receipt import RetentionReceipt, RuleReceipt
from kern.retention.rules import RetentionBatch, RetentionRule, RuleKind

__all__ = [
    "RetentionBatch",
    "RetentionPolicy",
    "RetentionReceipt",
    "RetentionRule",
    "RuleKind",
    "RuleReceipt",
]
