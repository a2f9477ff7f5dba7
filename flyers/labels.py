"""The flyer's own wording, in English and Simplified Chinese.

Kept here (not in the bot's locales): the flyer is a printed document with its own wording, and the
renderer must work without the bot.
"""

from __future__ import annotations

LABELS: dict[str, dict[str, str]] = {
    "en": {
        "missing": "MISSING",
        "have_you_seen": "Have you seen this person?",
        "also_known_as": "Also known as",
        "age_then": "Age when missing",
        "age_now": "Age now",
        "age": "Age",
        "missing_since": "Missing since",
        "last_seen": "Last seen",
        "sex": "Sex",
        "born": "Born",
        "height": "Height",
        "build": "Build",
        "hair": "Hair",
        "eyes": "Eyes",
        "marks": "Distinguishing marks",
        "clothing": "Last seen wearing",
        "circumstances": "Circumstances",
        "contact_intro": "If you have any information, please contact",
        "contact_intro_short": "Seen them? Call",
        "reference": "Ref.",
        "family": "Family",
        "qr_caption": "Seen them? Scan to tell us — anonymously",
        "qr_caption_short": "Scan the code to tell us — anonymously",
        "no_photo": "No photo available",
        "case": "Case",
        "flyer_date": "Flyer date",
        "emergency": "In danger now? Call the local emergency number.",
        "age_progressed": "Age-progressed image",
        "male": "Male",
        "female": "Female",
    },
    "zh": {
        "missing": "寻人启事",
        "have_you_seen": "您见过此人吗？",
        "also_known_as": "又名",
        "age_then": "失踪时年龄",
        "age_now": "现年",
        "age": "年龄",
        "missing_since": "失踪时间",
        "last_seen": "最后出现地点",
        "sex": "性别",
        "born": "出生",
        "height": "身高",
        "build": "体型",
        "hair": "头发",
        "eyes": "眼睛",
        "marks": "体貌特征",
        "clothing": "失踪时衣着",
        "circumstances": "失踪经过",
        "contact_intro": "如有任何线索，请联系",
        "contact_intro_short": "如有线索，请致电",
        "reference": "报案编号",
        "family": "家属",
        "qr_caption": "见过此人？扫码匿名提供线索",
        "qr_caption_short": "扫描二维码，匿名提供线索",
        "no_photo": "暂无照片",
        "case": "案件",
        "flyer_date": "制作日期",
        "emergency": "如遇危险，请立即拨打当地报警电话。",
        "age_progressed": "模拟成长照片",
        "male": "男",
        "female": "女",
    },
}

# HTML lang tags: "zh-Hans" makes Pango pick the Simplified Chinese glyph forms.
HTML_LANG = {"en": "en", "zh": "zh-Hans"}
LANGS_OF: dict[str, tuple[str, ...]] = {"en": ("en",), "zh": ("zh",), "bi": ("en", "zh")}

EN_MONTHS = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)
