"""The real Pulumi CLI as a user runs it, and the lab's project around the unchanged program."""
