"""One module per resource; importing this package registers every action."""

from . import bot, contact, conversation, dataset, file, memory, partner, secret, skillset, task  # noqa: F401
from . import completion, platform, search, usage  # noqa: F401  (the conversation engine's routes)
from . import session  # noqa: F401  (last: it marks the session-allowed actions)
