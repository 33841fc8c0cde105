"""The two images the project ships, built and run on this machine without Docker: podman
and runc from Debian's packages, a base image of Debian's Python 3.11 made with
debootstrap, everything cached in ``$SLUICE_CACHE_DIR/images`` (docs/images.md)."""
