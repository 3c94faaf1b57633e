"""Herald's fixed sentences in Teams chats."""

SORRY = "Sorry, something went wrong on Herald's side. The details are in its log."
NOT_A_MEMBER = ("I deliver your vendor's partner notices here. I don't recognise you as a partner contact yet; "
                "ask your channel account manager to add you to the partner directory.")
WELCOME = ("Hi, I'm Herald. Notices from your vendor's partner team will arrive here; critical ones have an "
           "**Acknowledge** button.")
