"""Node lifecycle: wrapper, spot watcher, finalizer, hooks (SPEC sections 5-9)."""
