"""The pod runner's and the scheduler's informer is the product's own (bridge/informer.py):
list → watch → list again on 410 Gone or a dropped connection, with synthetic events."""

from bridge.informer import ADDED, DELETED, MODIFIED, Handler, Informer, Key, key_of

__all__ = ["ADDED", "DELETED", "MODIFIED", "Handler", "Informer", "Key", "key_of"]
