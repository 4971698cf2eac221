"""The web dashboard at /ui: HTML shells and their static assets, data from the JSON API."""
