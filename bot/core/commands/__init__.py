"""The staff command language shared by Slack and Teams: parsing the words, and running a parsed
command with the same role checks whatever platform it was typed on."""
