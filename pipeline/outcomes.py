"""The outcomes an image can have, shared by the decision rules, the tasks and the report store."""

PENDING = "pending"  #: the bridge wrote the row; the chain has not finished
CLEAN = "clean"  #: no blocking label
BLOCKED = "blocked"  #: a blocking label; the object carries the block tag
FAILED = "failed"  #: could not be judged or tagged; ``error_code`` says why
DELETED = "deleted"  #: the object was removed (before or after it was judged)
#: a newer upload to the same key (unversioned bucket) was judged instead; this one no longer exists
SUPERSEDED = "superseded"

OUTCOMES = (PENDING, CLEAN, BLOCKED, FAILED, DELETED, SUPERSEDED)
#: Outcomes no event or task changes any more (``pending`` is the only open one).
TERMINAL = (CLEAN, BLOCKED, FAILED, DELETED, SUPERSEDED)
