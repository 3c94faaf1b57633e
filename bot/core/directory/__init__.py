"""Who the partners and staff are and how to reach them: directory import, audiences, staff and
their permissions, members' preferences, pauses, platform linking and connected workspaces."""
