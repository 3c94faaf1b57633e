"""`GET /privacy` and `GET /terms`: Herald's own privacy statement and terms of use, the pages the
Teams app package links when the organisation running Herald names none of its own
(HERALD_PRIVACY_URL, HERALD_TERMS_URL). Plain pages, no sign-in: Teams and its admin centre show
these links to anyone the app is offered to.

What they say is what Herald stores (storage/models.py) and does with it (README.md): keep them
true when either changes. Herald has no setting naming a contact, so they send people to the
organisation that runs it.
"""

from __future__ import annotations

from html import escape

from aiohttp import web

from bot.teams_package import PRIVACY_PATH, TERMS_PATH
from config.settings import Settings

_HEADERS = {
    "Cache-Control": "public, max-age=3600",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}
_STYLE = ("body{font-family:system-ui,sans-serif;max-width:46em;margin:2em auto;padding:0 1em;line-height:1.5;"
          "color:#1b1b1b}h1{color:#1F4E79}h2{font-size:1.1em;margin-top:1.6em}li{margin:.3em 0}")
_CONTACT = ("For questions about your data, or to have it corrected, ask the organisation that runs this Herald "
            "(the vendor whose notices it delivers; your channel account manager can tell you whom to contact).")

_PRIVACY = """
<p>Herald delivers a vendor's partner notices to partner companies' staff in Slack and Microsoft Teams.
It is self-hosted: the organisation that runs it keeps what it stores in its own database.
{contact}</p>

<h2>What Herald stores about you, and why</h2>
<ul>
<li><b>Your directory entry</b>, imported by the vendor: your name, e-mail address, company (and the
company's tier, region, country, industry, size and partner type), role, time zone and language. It decides
which notices reach you, and when.</li>
<li><b>Your chat accounts</b>: your Slack or Teams user id, your workspace or tenant, and Herald's direct
conversation with you (in Teams also its service address), and whether you removed the app. They are how
Herald writes to you. When neither the directory nor you gave a time zone, the one Teams reports for your
device with a message you send Herald is kept.</li>
<li><b>Your preferences</b>: the optional topics you left, daily or weekly digests, quiet hours, time zone and
preferred platform, so that Herald keeps to them.</li>
<li><b>What was sent to you</b>: each notice, reminder, digest and onboarding step, when and where it was
delivered or why it could not be, and the message's id (to update it in place after an edit or a
retraction), and for a notice whose wording is being tested, which wording you got.</li>
<li><b>What you do with it</b>: when you acknowledge a notice, and which version of it you acknowledged;
presses of a notice's link button, where Herald is told of them (the first time and how often). The vendor's
channel account managers and compliance staff see who acknowledged what and when in their reports, and a
notice's author or your channel account manager is told who had not acknowledged by its deadline.</li>
<li><b>Survey answers</b>: your answer, comment and each change of it, with your company and role. For an
anonymous survey the answer is kept under a code instead of your name, and once the survey closes nothing
Herald stores links the answer to you.</li>
<li><b>The questions you ask</b> the onboarding assistant: the text, the answer given and your feedback, and,
if you pass a question to your channel account manager, their reply. They are used to answer you and to
improve the assistant: a question's wording may be added to its knowledge base. Herald acts only on what
you send it in your direct chat with it and the buttons you press; it cannot read your other conversations
or channels.</li>
<li><b>An audit trail</b> of what happened (notices sent, delivered, acknowledged, preferences changed, ...),
with the time and who, chained so that a change to it shows. It lets the vendor show what was sent to whom
and who acknowledged it.</li>
</ul>

<h2>Who else sees it</h2>
<p>Slack or Microsoft carry Herald's messages to you under their own terms. Herald sends what it stores to
nobody else: the onboarding assistant runs on Herald's own server. The vendor's staff who use Herald see it
as described above.</p>

<h2>How long it is kept</h2>
<p>Herald deletes none of this by itself: a person who leaves the directory is marked inactive and sent
nothing more, and their records stay, as the audit trail needs them. How long the database is kept is up to
the organisation that runs Herald.</p>

<h2>About the vendor's staff</h2>
<p>For the vendor's own staff Herald also stores their e-mail address, name, role and chat ids, the notices
they wrote, the replies they gave and their sign-ins to Herald's web console.</p>

<h2>Cookies</h2>
<p>Herald's messages and these pages set none. Herald sets cookies only for the vendor's staff signed in to
its web console, and for someone adding it to a Slack workspace.</p>

<p><a href="{terms}">Terms of use</a></p>
"""

_TERMS = """
<p>Herald is the tool through which a vendor sends its partner companies' staff notices in Slack and
Microsoft Teams. The organisation that runs this Herald offers it to you; your use of it is governed by the
agreements between your company and that organisation, which this page does not replace.</p>

<h2>Using Herald</h2>
<ul>
<li>Notices come from the vendor's channel account managers. Some must be acknowledged: pressing
<b>Acknowledge</b> records, with your name and the time, that you received and read that version of the
notice, and the vendor's staff see it in their reports. Until you acknowledge, Herald may remind you, and
after the deadline your channel account manager (or the notice's author) is told.</li>
<li>In your preferences you can leave optional topics, choose daily or weekly digests and set quiet hours
and your time zone; notices that must be acknowledged cannot be turned off.</li>
<li>The onboarding assistant answers from the vendor's knowledge base and can be wrong; <b>Ask my CAM</b>
passes your question to your channel account manager.</li>
<li>Survey answers are seen by the vendor's staff, with your name unless the survey is anonymous.</li>
</ul>

<p>{contact}</p>

<p><a href="{privacy}">Privacy statement</a></p>
"""


def add_policy_routes(app: web.Application, settings: Settings) -> None:
    """Serve the two pages; each links the other one the Teams package links (the organisation's
    own when configured)."""
    privacy = _page("Herald: privacy", _PRIVACY.format(contact=escape(_CONTACT),
                                                        terms=escape(settings.terms_url or TERMS_PATH)))
    terms = _page("Herald: terms of use", _TERMS.format(contact=escape(_CONTACT),
                                                        privacy=escape(settings.privacy_url or PRIVACY_PATH)))

    async def privacy_page(request: web.Request) -> web.Response:
        return web.Response(text=privacy, content_type="text/html", headers=_HEADERS)

    async def terms_page(request: web.Request) -> web.Response:
        return web.Response(text=terms, content_type="text/html", headers=_HEADERS)

    app.router.add_get(PRIVACY_PATH, privacy_page)
    app.router.add_get(TERMS_PATH, terms_page)


def _page(title: str, body: str) -> str:
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{escape(title)}</title><style>{_STYLE}</style></head>"
            f"<body><h1>{escape(title)}</h1>{body}</body></html>\n")
