"""Published layer: the analyst file, masked and described."""
