"""Result publishers behind one interface (`base.Publisher`)."""
