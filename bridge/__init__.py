"""The platform-neutral core of the support bridge."""
