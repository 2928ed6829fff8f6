"""Model providers behind one port (:mod:`.base`); one adapter per vendor."""
