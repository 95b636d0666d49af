"""Data preparation: Vaani speech manifests (vaani.py), the offline Vaani-style corpus (synthetic.py)
and its sentence generator (sentences.py)."""
