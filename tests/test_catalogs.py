"""Every message exists in every language, with the same placeholders."""

import re

from bot.i18n import LANGUAGES, catalog


def test_every_language_has_every_message_with_the_same_placeholders():
    english = catalog("en")
    for language in LANGUAGES:
        messages = catalog(language)
        assert messages.keys() == english.keys(), language
        for key, text in english.items():
            assert set(re.findall(r"{(\w+)}", messages[key])) == set(re.findall(r"{(\w+)}", text)), (language, key)
