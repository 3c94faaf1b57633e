"""Operating Herald: the /metrics endpoint, inbound request metrics and `herald doctor`'s checks."""
