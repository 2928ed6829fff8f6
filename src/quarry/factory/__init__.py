"""The Factory: working copies, the compiler and promotion. Never imported by serve."""
