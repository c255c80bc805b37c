// Intentionally empty: the target exists to carry the header and the link flag.
