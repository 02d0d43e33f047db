"""Infrastructure every room uses: one-line errors and message helpers, the weights hub, atomic files, image
files read safely, and signal handling. The lowest layer: it imports nothing else of dgnam."""
