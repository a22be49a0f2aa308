"""Items from the outside channels: operator registration in chat and file import."""
