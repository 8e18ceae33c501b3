"""Repository-level pytest configuration (the plugin itself is spanza.pytest_plugin)."""
