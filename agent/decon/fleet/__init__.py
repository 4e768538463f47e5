"""The laptop side: user-data rendering, fleet launch, status and review."""
