"""One module per resource; importing this package registers every action."""

from . import bot, contact, conversation, dataset, file, memory, secret, skillset, task  # noqa: F401
