"""Herald's fixed sentences in Teams chats."""

SORRY = "Sorry, something went wrong on Herald's side. The details are in its log."
NOT_A_MEMBER = ("I deliver your vendor's partner notices here. I don't recognise you as a partner contact yet; "
                "ask your channel account manager to add you to the partner directory.")
WELCOME = ("Hi, I'm Herald. Notices from your vendor's partner team will arrive here; critical ones have an "
           "**Acknowledge** button.")
ONE_TO_ONE = ("I work in a 1:1 chat only: open a chat with Herald to get your notices, ask a question or give "
              "a command there.")
ALREADY_RECEIVED = "Herald had received this press already, and acted on it once."
