"""The API routers: ``studies`` (upload, worklist, reports, images) and ``system`` (health, presets)."""
