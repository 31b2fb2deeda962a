"""Small interactive programs shipped for the terminal page's demo catalogue."""
