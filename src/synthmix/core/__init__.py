"""Building blocks with no internal dependencies: file I/O, hashing, seeding, config, errors."""
