"""Tools an agent's model may call; each has Oxy's name and argument schema."""
