"""The running cluster as the lab reaches it: the private daemon's guests, their consoles, SSH
from the namespace, and each node's typed questions."""
