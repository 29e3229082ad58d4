"""The resources below the mount point, one module each, every one a plain class served
through `resource.Served` (the one request path and response layer)."""
