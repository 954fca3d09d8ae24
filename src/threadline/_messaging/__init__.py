"""Messaging: the publish/consume core every broker adapter is a page of adaptation over."""
