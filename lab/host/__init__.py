"""What the lab needs of this machine: its tools, a network namespace, stop signals and the runs
they end, the accelerator, a private libvirtd, the base image."""
