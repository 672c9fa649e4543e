"""The outcomes an image can have, shared by the decision rules, the tasks and the report store."""

PENDING = "pending"  #: the bridge wrote the row; the chain has not finished
CLEAN = "clean"  #: no blocking label
BLOCKED = "blocked"  #: a blocking label; the object carries the block tag
FAILED = "failed"  #: could not be judged or tagged; ``error_code`` says why
DELETED = "deleted"  #: the object was removed

OUTCOMES = (PENDING, CLEAN, BLOCKED, FAILED, DELETED)
