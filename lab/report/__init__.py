"""What a run shows and keeps: the report, its HTML page, the live progress."""
