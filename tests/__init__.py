"""The test tree (a regular package, so `tests.*` never resolves to a site-packages `tests`)."""
