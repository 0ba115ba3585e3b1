"""The bridge's own pages: statistics, widget, media, metrics."""
