"""The program's own plan of a stack (the mock engine) and what the lab reads of it: the
topology it boots and the libvirt objects it expects."""
