"""The onboarding assistant's own words around an answer (titles, notes, button labels, the replies
to its buttons), in the languages it answers in (issue 16 item 5): German, French and Spanish, and
English for every other locale.

One table, so a phrase is never English on one platform and translated on the other; the Slack and
Teams channels render and escape these texts as any other. A phrase is chosen by the *answer's*
locale (``assistant.answer_locale``): the chrome is in the language the answer is given in.
"""

from __future__ import annotations

from bot.core.onboarding.qa import primary_language

LANGUAGES = ("en", "de", "fr", "es")

PHRASES: dict[str, dict[str, str]] = {
    "helpful": {"en": "Helpful", "de": "Hilfreich", "fr": "Utile", "es": "Útil"},
    "not_helpful": {"en": "Not helpful", "de": "Nicht hilfreich", "fr": "Pas utile", "es": "No es útil"},
    "ask_cam": {"en": "Ask my CAM", "de": "Meinen CAM fragen", "fr": "Demander à mon CAM",
                "es": "Preguntar a mi CAM"},
    "did_you_mean": {"en": "Did you mean: {title}?", "de": "Meinten Sie: {title}?",
                     "fr": "Vouliez-vous dire : {title} ?", "es": "¿Quería decir: {title}?"},
    "cam_can_help": {
        "en": "Your channel account manager can help: press {ask_cam} and I'll pass it on.",
        "de": "Ihr Channel Account Manager kann helfen: Drücken Sie {ask_cam}, und ich leite Ihre Frage weiter.",
        "fr": "Votre channel account manager peut vous aider : appuyez sur {ask_cam} et je lui transmets "
              "votre question.",
        "es": "Su channel account manager puede ayudarle: pulse {ask_cam} y le haré llegar su pregunta."},
    "otherwise_cam": {
        "en": "Otherwise your channel account manager can help: press {ask_cam} and I'll pass it on.",
        "de": "Andernfalls kann Ihr Channel Account Manager helfen: Drücken Sie {ask_cam}, und ich leite Ihre "
              "Frage weiter.",
        "fr": "Sinon, votre channel account manager peut vous aider : appuyez sur {ask_cam} et je lui transmets "
              "votre question.",
        "es": "Si no, su channel account manager puede ayudarle: pulse {ask_cam} y le haré llegar su pregunta."},
    "unavailable_title": {"en": "I can't look that up right now", "de": "Das kann ich gerade nicht nachschlagen",
                          "fr": "Je ne peux pas chercher cela pour le moment",
                          "es": "Ahora mismo no puedo consultarlo"},
    "unavailable": {
        "en": "The partner knowledge base is not available at the moment, so I can't answer your question myself.",
        "de": "Die Partner-Wissensdatenbank ist im Moment nicht verfügbar, daher kann ich Ihre Frage nicht selbst "
              "beantworten.",
        "fr": "La base de connaissances partenaires n'est pas disponible pour le moment ; je ne peux donc pas "
              "répondre moi-même à votre question.",
        "es": "La base de conocimientos para partners no está disponible en este momento, así que no puedo "
              "responder yo mismo a su pregunta."},
    "confidential_title": {"en": "That answer is confidential", "de": "Diese Antwort ist vertraulich",
                           "fr": "Cette réponse est confidentielle", "es": "Esa respuesta es confidencial"},
    "confidential": {
        "en": "The partner knowledge base has an answer to this, but it is confidential and only shared with "
              "some partner roles or tiers.",
        "de": "Die Partner-Wissensdatenbank hat eine Antwort darauf, aber sie ist vertraulich und wird nur "
              "bestimmten Partnerrollen oder -stufen gezeigt.",
        "fr": "La base de connaissances partenaires a une réponse, mais elle est confidentielle et réservée à "
              "certains rôles ou niveaux de partenaires.",
        "es": "La base de conocimientos para partners tiene una respuesta, pero es confidencial y solo se "
              "comparte con algunos roles o niveles de partner."},
    "unsure_title": {"en": "I'm not sure I have that one", "de": "Ich bin nicht sicher, ob ich das weiß",
                     "fr": "Je ne suis pas sûr d'avoir la réponse", "es": "No estoy seguro de tener esa respuesta"},
    "unsure_words": {
        "en": "Your question uses words the partner knowledge base doesn't, so I may not have an answer to it.",
        "de": "Ihre Frage verwendet Wörter, die in der Partner-Wissensdatenbank nicht vorkommen, daher habe ich "
              "vielleicht keine Antwort darauf.",
        "fr": "Votre question emploie des mots que la base de connaissances partenaires n'utilise pas ; je n'ai "
              "donc peut-être pas de réponse.",
        "es": "Su pregunta usa palabras que la base de conocimientos para partners no usa, así que quizá no "
              "tenga respuesta."},
    "unsure_language": {
        "en": "The partner knowledge base is in English, so I may not have understood your question well enough "
              "to be sure.",
        "de": "Die Partner-Wissensdatenbank ist auf Englisch, daher habe ich Ihre Frage vielleicht nicht gut "
              "genug verstanden, um sicher zu sein.",
        "fr": "La base de connaissances partenaires est en anglais ; je n'ai donc peut-être pas assez bien compris "
              "votre question pour en être sûr.",
        "es": "La base de conocimientos para partners está en inglés, así que quizá no haya entendido su pregunta "
              "lo bastante bien como para estar seguro."},
    "unsure_offer": {"en": "If it is about \u201c{title}\u201d, press the button.",
                     "de": "Falls es um \u201e{title}\u201c geht, drücken Sie die Schaltfläche.",
                     "fr": "S'il s'agit de \u00ab\u00a0{title}\u00a0\u00bb, appuyez sur le bouton.",
                     "es": "Si se trata de \u00ab{title}\u00bb, pulse el botón."},
    "unknown_title": {"en": "I don't know that one yet", "de": "Das weiß ich noch nicht",
                      "fr": "Je ne le sais pas encore", "es": "Todavía no lo sé"},
    "unknown": {
        "en": "I couldn't find an answer to your question in the partner knowledge base.",
        "de": "Ich habe in der Partner-Wissensdatenbank keine Antwort auf Ihre Frage gefunden.",
        "fr": "Je n'ai pas trouvé de réponse à votre question dans la base de connaissances partenaires.",
        "es": "No he encontrado una respuesta a su pregunta en la base de conocimientos para partners."},
    "english_only": {"en": "(This answer is only available in English.)",
                     "de": "(Diese Antwort gibt es nur auf Englisch.)",
                     "fr": "(Cette réponse n'existe qu'en anglais.)",
                     "es": "(Esta respuesta solo está disponible en inglés.)"},
    "more": {"en": "More: {link}", "de": "Mehr: {link}", "fr": "Plus : {link}", "es": "Más: {link}"},
    "mainly_for": {"en": "(This is mainly for {who}.)", "de": "(Das richtet sich vor allem an {who}.)",
                   "fr": "(Ceci s'adresse surtout à {who}.)", "es": "(Esto es sobre todo para {who}.)"},
    "roles_at_tiers": {"en": "{roles} at {tiers} partners", "de": "{roles} bei {tiers}-Partnern",
                       "fr": "{roles} chez les partenaires {tiers}", "es": "{roles} en partners {tiers}"},
    "tiers_partners": {"en": "{tiers} partners", "de": "{tiers}-Partner", "fr": "les partenaires {tiers}",
                       "es": "partners {tiers}"},
    "and": {"en": "and", "de": "und", "fr": "et", "es": "y"},
    "long_question": {
        "en": "(Your message was {asked:,} characters; I read only the first {shown:,}, and so would your channel "
              "account manager if you ask them. Send the rest as a question of its own.)",
        "de": "(Ihre Nachricht hatte {asked} Zeichen; ich habe nur die ersten {shown} gelesen, und so ginge "
              "es auch Ihrem Channel Account Manager. Senden Sie den Rest als eigene Frage.)",
        "fr": "(Votre message faisait {asked} caractères ; je n'ai lu que les {shown} premiers, comme le "
              "ferait votre channel account manager. Envoyez la suite comme une question à part.)",
        "es": "(Su mensaje tenía {asked} caracteres; solo he leído los primeros {shown}, igual que haría su "
              "channel account manager. Envíe el resto como una pregunta aparte.)"},
    "thanks_helpful": {"en": "Thanks, glad it helped.", "de": "Danke, schön, dass es geholfen hat.",
                       "fr": "Merci, ravi que cela vous ait aidé.", "es": "Gracias, me alegro de que le haya servido."},
    "thanks_not_helpful": {
        "en": "Thanks for telling me. Press {ask_cam} if you'd like a person to answer.",
        "de": "Danke für den Hinweis. Drücken Sie {ask_cam}, wenn Ihnen eine Person antworten soll.",
        "fr": "Merci de me l'avoir dit. Appuyez sur {ask_cam} si vous souhaitez qu'une personne vous réponde.",
        "es": "Gracias por decírmelo. Pulse {ask_cam} si prefiere que le responda una persona."},
    "handoff_passed": {
        "en": "I've passed your question to {name}; their answer will appear here.",
        "de": "Ich habe Ihre Frage an {name} weitergeleitet; die Antwort erscheint hier.",
        "fr": "J'ai transmis votre question à {name} ; sa réponse apparaîtra ici.",
        "es": "He pasado su pregunta a {name}; su respuesta aparecerá aquí."},
    "handoff_noted": {
        "en": "I've noted your question for {name}, who will get back to you.",
        "de": "Ich habe Ihre Frage für {name} notiert; Sie bekommen eine Antwort.",
        "fr": "J'ai noté votre question pour {name}, qui reviendra vers vous.",
        "es": "He anotado su pregunta para {name}, que se pondrá en contacto con usted."},
    "handoff_already": {
        "en": "Your question is already with {name}; their answer will appear here.",
        "de": "Ihre Frage liegt bereits bei {name}; die Antwort erscheint hier.",
        "fr": "Votre question est déjà entre les mains de {name} ; sa réponse apparaîtra ici.",
        "es": "Su pregunta ya la tiene {name}; su respuesta aparecerá aquí."},
    "handoff_answered": {
        "en": "{name} has answered this question already: their answer is in this conversation. If you need "
              "more, write your question again and press {ask_cam} under my answer.",
        "de": "{name} hat diese Frage bereits beantwortet: Die Antwort steht in diesem Chat. Wenn Sie mehr wissen "
              "möchten, stellen Sie Ihre Frage erneut und drücken Sie unter meiner Antwort {ask_cam}.",
        "fr": "{name} a déjà répondu à cette question : sa réponse se trouve dans cette conversation. S'il vous "
              "faut davantage, posez à nouveau votre question et appuyez sur {ask_cam} sous ma réponse.",
        "es": "{name} ya ha respondido a esta pregunta: su respuesta está en esta conversación. Si necesita más, "
              "escriba de nuevo su pregunta y pulse {ask_cam} bajo mi respuesta."},
    "handoff_waiting_title": {"en": "Your question is still with {name}", "de": "Ihre Frage liegt noch bei {name}",
                              "fr": "Votre question est toujours entre les mains de {name}",
                              "es": "Su pregunta la sigue teniendo {name}"},
    "handoff_waiting": {
        "en": "There is no answer yet, so I've reminded {name}; their answer will appear here.",
        "de": "Es gibt noch keine Antwort, daher habe ich {name} daran erinnert; die Antwort erscheint hier.",
        "fr": "Il n'y a pas encore de réponse, j'ai donc relancé {name} ; sa réponse apparaîtra ici.",
        "es": "Todavía no hay respuesta, así que se lo he recordado a {name}; su respuesta aparecerá aquí."},
    "relay_title": {"en": "{name} answered your question", "de": "{name} hat Ihre Frage beantwortet",
                    "fr": "{name} a répondu à votre question", "es": "{name} ha respondido a su pregunta"},
    "you_asked": {"en": "You asked: \"{question}\"", "de": "Ihre Frage: \u201e{question}\u201c",
                  "fr": "Votre question : \u00ab\u00a0{question}\u00a0\u00bb", "es": "Usted preguntó: \u00ab{question}\u00bb"},
}


def language(locale: str) -> str:
    """The language of the assistant's own words for ``locale``: de, fr or es, else en."""
    primary = primary_language(locale or "")
    return primary if primary in LANGUAGES else "en"


def phrase(key: str, locale: str, **values: object) -> str:
    """The phrase ``key`` in ``locale``'s language (English for any other), with ``values`` filled in."""
    texts = PHRASES[key]
    return texts[language(locale)].format(**values)
