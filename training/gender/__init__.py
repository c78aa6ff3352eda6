"""Gender classification of mobile devices from behaviour features."""
