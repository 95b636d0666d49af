"""Template sentences over a closed lexicon: Telugu with English translations, plus Hindi, Kannada
and Tamil in their own scripts.

No parallel corpus ships in any package these machines can install (REFERENCE.md), so sentences are
built from templates.  The lexicon combines

* CLDR data through ``babel``: names of languages, countries, months and weekdays in each language
  and in English;
* numbers spelled out by ``num2words`` (``lang='te'``, ``'kn'``, ``'en'``; a short hand-written table
  for Hindi and Tamil, which num2words lacks);
* a curated list of everyday words (person names, towns, objects, food, places, animals) and
  phrases, each with its English.

Every Telugu template instance carries a correct English translation, so the same generator serves
speech translation (the synthetic Vaani corpus) and text-only Telugu->English data.  English
loanwords are written the Vaani way in ``raw``: native spelling followed by ``{english}``.

This module is a pure library: no audio, no I/O.  ``generate_sentences(language, n, seed)`` is
deterministic, and prefix-stable (the first k sentences of n are the k sentences of k).

Held-out partition (``partition_of``, ``sentence_for``): per (language, seed), about a fifth of every
slot list (names, towns, numbers, objects, foods, ...) is held out, and a sentence is *held out* when it
uses any held-out value or when a stable hash of its text falls in a small bucket (so that held-out
sentences also exist over seen values, and fixed phrases split too).  The synthetic speech corpus gives
train speakers only train-partition sentences and dev/test speakers only held-out ones, so its test
set measures generalisation to unseen sentences and unseen words, not recall of the training set.
"""

from __future__ import annotations

import random
import re
import zlib
from dataclasses import dataclass
from functools import lru_cache

from speech_calm.speech.indic import language_code, normalize, strip_annotations

__all__ = [
    "Sentence",
    "Word",
    "Template",
    "SUPPORTED_LANGUAGES",
    "TRANSLATED_LANGUAGES",
    "generate_sentences",
    "sentence_at",
    "sentence_for",
    "partition_of",
    "heldout_values",
    "heldout_tokens",
    "PARTITIONS",
    "lexicon",
    "templates",
    "vocabulary",
]

SUPPORTED_LANGUAGES = ("telugu", "hindi", "kannada", "tamil")
TRANSLATED_LANGUAGES = ("telugu",)

_VIRAMA = {"telugu": "\u0c4d", "kannada": "\u0ccd", "hindi": "\u094d", "tamil": "\u0bcd"}
_ZWNJ = "\u200c"


@dataclass(frozen=True)
class Sentence:
    """One generated sentence.

    language: lower-case English name; raw: Vaani-style transcript (loanwords followed by
    ``{english}``), without event tags; text: the normalised ASR target (``normalize(raw)``);
    spoken: what a TTS engine should read (raw without glosses, punctuation kept for prosody);
    translation: English (Telugu only, else None); template: the template id it came from;
    values: the native slot values it was filled with (``(category, word)`` pairs, in slot order).
    """

    language: str
    raw: str
    text: str
    spoken: str
    translation: str | None
    template: str
    values: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Word:
    """A lexicon entry.

    native: the word (may itself hold a braced gloss, e.g. a fixed phrase); english: its English;
    gloss: for loanwords, the English written in braces after it in raw transcripts; gender: ``m``/
    ``f`` for person names (verb agreement); pl / pl_en: plural forms.
    """

    native: str
    english: str | None = None
    gloss: str | None = None
    gender: str | None = None
    pl: str | None = None
    pl_en: str | None = None


@dataclass(frozen=True)
class Template:
    """``native`` and ``english`` patterns with ``$slot`` or ``$slot.form`` placeholders.

    A slot name without trailing digits names a lexicon category (``$name2`` draws from ``name``).
    ``[m-form|f-form]`` picks by the gender of the sentence's first gendered word.
    Forms: ``pl`` (plural), ``loc`` / ``dat`` (Telugu locative/dative).
    """

    id: str
    native: str
    english: str | None = None
    weight: float = 1.0


# --------------------------------------------------------------------------------------------------
# Telugu lexicon (curated part).  English names use their usual English spelling.
# --------------------------------------------------------------------------------------------------

_TE_NAMES_M = [
    ("రాము", "Ramu"), ("రవి", "Ravi"), ("కృష్ణ", "Krishna"), ("సురేష్", "Suresh"),
    ("రమేష్", "Ramesh"), ("వెంకట్", "Venkat"), ("శ్రీను", "Srinu"), ("ప్రసాద్", "Prasad"),
    ("మహేష్", "Mahesh"), ("కిరణ్", "Kiran"), ("అర్జున్", "Arjun"), ("గోపాల్", "Gopal"),
    ("నాగరాజు", "Nagaraju"), ("సతీష్", "Satish"), ("బాబు", "Babu"), ("చందు", "Chandu"),
]
_TE_NAMES_F = [
    ("సీత", "Sita"), ("లక్ష్మి", "Lakshmi"), ("రాధ", "Radha"), ("గీత", "Geetha"),
    ("సరిత", "Saritha"), ("పద్మ", "Padma"), ("అనిత", "Anitha"), ("కవిత", "Kavitha"),
    ("స్వాతి", "Swathi"), ("దివ్య", "Divya"), ("ప్రియ", "Priya"), ("శ్రావణి", "Sravani"),
    ("మాధవి", "Madhavi"), ("సుజాత", "Sujatha"), ("జ్యోతి", "Jyothi"), ("వాణి", "Vani"),
]
_TE_CITIES = [
    ("హైదరాబాద్", "Hyderabad"), ("విజయవాడ", "Vijayawada"), ("విశాఖపట్నం", "Visakhapatnam"),
    ("వరంగల్", "Warangal"), ("తిరుపతి", "Tirupati"), ("గుంటూరు", "Guntur"), ("నెల్లూరు", "Nellore"),
    ("కర్నూలు", "Kurnool"), ("చెన్నై", "Chennai"), ("బెంగళూరు", "Bengaluru"), ("ముంబై", "Mumbai"),
    ("ఢిల్లీ", "Delhi"), ("కాకినాడ", "Kakinada"), ("రాజమండ్రి", "Rajahmundry"), ("ఖమ్మం", "Khammam"),
    ("నిజామాబాద్", "Nizamabad"), ("కరీంనగర్", "Karimnagar"), ("ఒంగోలు", "Ongole"),
    ("అనంతపురం", "Anantapur"), ("కడప", "Kadapa"),
]
# (singular, plural, English singular, English plural).  Things, then produce: "I want a red X"
# only makes sense for things.
_TE_OBJECTS = [
    ("పుస్తకం", "పుస్తకాలు", "book", "books"), ("పెన్ను", "పెన్నులు", "pen", "pens"),
    ("కుర్చీ", "కుర్చీలు", "chair", "chairs"), ("సంచి", "సంచులు", "bag", "bags"),
    ("గడియారం", "గడియారాలు", "clock", "clocks"), ("చొక్కా", "చొక్కాలు", "shirt", "shirts"),
    ("గొడుగు", "గొడుగులు", "umbrella", "umbrellas"), ("బుట్ట", "బుట్టలు", "basket", "baskets"),
    ("కుండ", "కుండలు", "pot", "pots"), ("చెంబు", "చెంబులు", "jug", "jugs"), ("బొమ్మ", "బొమ్మలు", "toy", "toys"),
]
_TE_PRODUCE = [
    ("అరటిపండు", "అరటిపండ్లు", "banana", "bananas"), ("మామిడిపండు", "మామిడిపండ్లు", "mango", "mangoes"),
    ("ఉల్లిపాయ", "ఉల్లిపాయలు", "onion", "onions"), ("గుడ్డు", "గుడ్లు", "egg", "eggs"),
    ("పువ్వు", "పువ్వులు", "flower", "flowers"),
]
_TE_ANIMALS = [
    ("ఆవు", "ఆవులు", "cow", "cows"), ("మేక", "మేకలు", "goat", "goats"), ("కుక్క", "కుక్కలు", "dog", "dogs"),
    ("పిల్లి", "పిల్లులు", "cat", "cats"), ("గేదె", "గేదెలు", "buffalo", "buffaloes"),
    ("గుర్రం", "గుర్రాలు", "horse", "horses"), ("కోడి", "కోళ్ళు", "hen", "hens"),
    ("బాతు", "బాతులు", "duck", "ducks"),
]
_TE_FOODS = [
    ("అన్నం", "rice"), ("పప్పు", "dal"), ("ఇడ్లీ", "idli"), ("దోశ", "dosa"), ("ఉప్మా", "upma"),
    ("పెరుగు", "curd"), ("బిర్యానీ", "biryani"), ("పులిహోర", "tamarind rice"), ("చపాతీ", "chapati"),
    ("సాంబారు", "sambar"), ("పాయసం", "payasam"), ("గారెలు", "vadas"),
]
# (native, English with "some", loanword gloss or None)
_TE_DRINKS = [
    ("టీ", "tea", "tea"), ("కాఫీ", "coffee", "coffee"), ("పాలు", "milk", None),
    ("నీళ్ళు", "water", None), ("మజ్జిగ", "buttermilk", None), ("కొబ్బరి నీళ్ళు", "coconut water", None),
]
# English loanwords: things.  (native, English)
_TE_LOAN_THINGS = [
    ("ఫోన్", "phone"), ("కంప్యూటర్", "computer"), ("టీవీ", "TV"), ("ఫ్యాన్", "fan"), ("లైట్", "light"),
    ("రేడియో", "radio"), ("ఫ్రిజ్", "fridge"), ("లాప్టాప్", "laptop"), ("కెమెరా", "camera"),
    ("బైక్", "bike"), ("వాచ్", "watch"), ("ప్రింటర్", "printer"),
]
# English loanwords: places.
_TE_LOAN_PLACES = [
    ("స్కూల్", "school"), ("ఆఫీస్", "office"), ("హాస్పిటల్", "hospital"), ("బ్యాంక్", "bank"),
    ("మార్కెట్", "market"), ("స్టేషన్", "station"), ("కాలేజ్", "college"), ("లైబ్రరీ", "library"),
    ("హోటల్", "hotel"), ("పార్క్", "park"),
]
# (native, English, gloss); gloss for loanwords.
_TE_PEOPLE = [
    ("పిల్లలు", "children", None), ("విద్యార్థులు", "students", None), ("రైతులు", "farmers", None),
    ("అతిథులు", "guests", None), ("స్నేహితులు", "friends", None), ("కూలీలు", "workers", None),
    ("డాక్టర్లు", "doctors", "doctors"), ("టీచర్లు", "teachers", "teachers"),
]
_TE_COLORS = [
    ("ఎర్ర", "red"), ("నీలి", "blue"), ("పచ్చ", "green"), ("తెల్ల", "white"), ("నల్ల", "black"),
    ("పసుపు", "yellow"),
]
_TE_PHRASES = [
    ("నమస్కారం, మీరు ఎలా ఉన్నారు?", "Hello, how are you?"),
    ("నేను బాగున్నాను, ధన్యవాదాలు.", "I am fine, thank you."),
    ("మీ పేరు ఏమిటి?", "What is your name?"),
    ("మీది ఏ ఊరు?", "Which town are you from?"),
    ("ఇప్పుడు సమయం ఎంత?", "What time is it now?"),
    ("నాకు ఆకలిగా ఉంది.", "I am hungry."),
    ("నాకు దాహంగా ఉంది.", "I am thirsty."),
    ("ఈ రోజు వాతావరణం బాగుంది.", "The weather is nice today."),
    ("బయట వర్షం పడుతోంది.", "It is raining outside."),
    ("ఈ రోజు చాలా వేడిగా ఉంది.", "It is very hot today."),
    ("దయచేసి నెమ్మదిగా మాట్లాడండి.", "Please speak slowly."),
    ("నాకు అర్థం కాలేదు.", "I did not understand."),
    ("దయచేసి మళ్ళీ చెప్పండి.", "Please say it again."),
    ("రేపు కలుద్దాం.", "See you tomorrow."),
    ("శుభోదయం.", "Good morning."),
    ("మీకు సహాయం కావాలా?", "Do you need help?"),
    ("ఇది ఎంత?", "How much is this?"),
    ("బస్ స్టాండ్ {bus stand} ఎక్కడ ఉంది?", "Where is the bus stand?"),
    ("నేను ఇంటికి వెళ్తున్నాను.", "I am going home."),
    ("మా అమ్మ వంట చేస్తోంది.", "My mother is cooking."),
    ("పిల్లలు బడికి వెళ్ళారు.", "The children went to school."),
    ("నాన్న పొలానికి వెళ్ళారు.", "Father went to the field."),
    ("ఈ రోజు సెలవు.", "Today is a holiday."),
    ("నీళ్ళు చాలా చల్లగా ఉన్నాయి.", "The water is very cold."),
    ("ఈ దారి ఎక్కడికి వెళ్తుంది?", "Where does this road go?"),
    ("నేను తెలుగు నేర్చుకుంటున్నాను.", "I am learning Telugu."),
    ("మీరు భోజనం చేశారా?", "Have you eaten?"),
    ("కొంచెం ఆగండి.", "Please wait a little."),
    ("చాలా ధన్యవాదాలు.", "Thank you very much."),
    ("క్షమించండి, నేను ఆలస్యంగా వచ్చాను.", "Sorry, I came late."),
    ("మీ ఫోన్ నంబర్ {phone number} చెప్పండి.", "Please tell me your phone number."),
    ("డాక్టర్ {doctor} ఎప్పుడు వస్తారు?", "When will the doctor come?"),
    ("ట్రైన్ {train} ఆలస్యంగా వస్తోంది.", "The train is running late."),
    ("నేను రోజూ ఉదయం నడుస్తాను.", "I walk every morning."),
    ("పండగకి మా ఊరు వెళ్తున్నాం.", "We are going to our village for the festival."),
    ("ఈ కూర చాలా రుచిగా ఉంది.", "This curry is very tasty."),
    ("మా ఇల్లు దగ్గరలోనే ఉంది.", "Our house is nearby."),
    ("అవును, నాకు తెలుసు.", "Yes, I know."),
]

_TE_TEMPLATES = [
    Template("te_name", "నా పేరు $name.", "My name is $name.", 1.0),
    Template("te_lives", "$name $city.loc [ఉంటాడు|ఉంటుంది].", "$name lives in $city.", 1.5),
    Template("te_today", "ఈ రోజు $weekday.", "Today is $weekday.", 0.6),
    Template("te_tomorrow", "రేపు $weekday.", "Tomorrow is $weekday.", 0.5),
    Template("te_have", "నా దగ్గర $num $item.pl ఉన్నాయి.", "I have $num $item.pl.", 1.5),
    Template("te_speaks", "$name $language బాగా [మాట్లాడతాడు|మాట్లాడుతుంది].", "$name speaks $language well.", 1.2),
    Template("te_trip", "$name $month.loc $country.dat [వెళ్తాడు|వెళ్తుంది].",
             "$name will go to $country in $month.", 1.5),
    Template("te_likes", "నాకు $food అంటే చాలా ఇష్టం.", "I really like $food.", 1.0),
    Template("te_give", "దయచేసి నాకు $drink ఇవ్వండి.", "Please give me some $drink.", 0.8),
    Template("te_broken", "నా $thing పని చేయడం లేదు.", "My $thing is not working.", 1.0),
    Template("te_went", "$name నిన్న $place.dat [వెళ్ళాడు|వెళ్ళింది].", "$name went to the $place yesterday.", 1.2),
    Template("te_price", "ఈ $item ధర $num రూపాయలు.", "This $item costs $num rupees.", 1.2),
    Template("te_came", "ఈ రోజు $num మంది $people వచ్చారు.", "$num $people came today.", 1.0),
    Template("te_animals", "$name ఇంట్లో $small $animal.pl ఉన్నాయి.",
             "There are $small $animal.pl at $name's house.", 1.2),
    Template("te_birthday", "నా పుట్టినరోజు $month.loc.", "My birthday is in $month.", 0.6),
    Template("te_noknow", "$name.dat $language రాదు.", "$name does not know $language.", 0.8),
    Template("te_wewent", "మేము $month.loc $city.dat వెళ్ళాము.", "We went to $city in $month.", 1.0),
    Template("te_want", "నాకు $color రంగు $obj కావాలి.", "I want a $color $obj.", 1.0),
    Template("te_bus", "బస్ {bus} $hour గంటలకు వస్తుంది.", "The bus comes at $hour o'clock.", 0.8),
    Template("te_drinks", "$name రోజూ $drink [తాగుతాడు|తాగుతుంది].", "$name drinks $drink every day.", 1.0),
    Template("te_bought", "$name కొత్త $thing [కొన్నాడు|కొంది].", "$name bought a new $thing.", 1.0),
    Template("te_when", "$name, నువ్వు $city.dat ఎప్పుడు వస్తున్నావు?", "$name, when are you coming to $city?", 0.8),
    Template("te_closed", "$weekday నాడు $place మూసి ఉంటుంది.", "The $place is closed on $weekday.", 0.8),
    Template("te_reads", "$name $country గురించి [చదువుతున్నాడు|చదువుతోంది].",
             "$name is reading about $country.", 0.8),
    Template("te_learn", "$language నేర్చుకోవడం సులభం.", "Learning $language is easy.", 0.6),
    Template("te_phrase", "$phrase", "$phrase", 3.0),
]

# --------------------------------------------------------------------------------------------------
# Hindi, Kannada, Tamil: native text only (an encoder can learn from them; no translation needed).
# Templates avoid case morphology that would depend on the word (postpositions are separate words).
# --------------------------------------------------------------------------------------------------

_HI_NAMES = [("राम", "m"), ("मोहन", "m"), ("अमित", "m"), ("राहुल", "m"), ("सुनील", "m"), ("विजय", "m"),
             ("अजय", "m"), ("संजय", "m"), ("सीता", "f"), ("गीता", "f"), ("प्रिया", "f"), ("पूजा", "f"),
             ("अनीता", "f"), ("कविता", "f"), ("सुनीता", "f"), ("नेहा", "f")]
_HI_CITIES = ["दिल्ली", "मुंबई", "लखनऊ", "पटना", "जयपुर", "भोपाल", "वाराणसी", "कानपुर", "आगरा", "इंदौर"]
_HI_OBJECTS = ["किताबें", "कलमें", "कुर्सियाँ", "थैले", "घड़ियाँ", "कमीज़ें", "छाते", "गाय", "बकरियाँ", "मुर्गियाँ"]
_HI_FOODS = ["चावल", "दाल", "रोटी", "समोसा", "खीर", "पनीर", "हलवा", "पराठा"]
_HI_NUMBERS = ["दो", "तीन", "चार", "पाँच", "छह", "सात", "आठ", "नौ", "दस", "ग्यारह", "बारह", "तेरह",
               "चौदह", "पंद्रह", "सोलह", "सत्रह", "अठारह", "उन्नीस", "बीस", "तीस", "चालीस", "पचास"]
_HI_PHRASES = ["नमस्ते, आप कैसे हैं?", "मैं ठीक हूँ, धन्यवाद।", "आपका नाम क्या है?", "बाहर बारिश हो रही है।",
               "मुझे भूख लगी है।", "कृपया धीरे बोलिए।", "आज बहुत गर्मी है।", "कल मिलते हैं।",
               "बस स्टैंड {bus stand} कहाँ है?", "मेरा फ़ोन {phone} काम नहीं कर रहा है।"]
_HI_TEMPLATES = [
    Template("hi_name", "मेरा नाम $name है।"),
    Template("hi_today", "आज $weekday है।", weight=0.6),
    Template("hi_lives", "$name $city में [रहता|रहती] है।", weight=1.5),
    Template("hi_trip", "$name $month में $country [जाएगा|जाएगी]।", weight=1.5),
    Template("hi_have", "मेरे पास $num $obj हैं।", weight=1.5),
    Template("hi_speaks", "$name $language [बोलता|बोलती] है।", weight=1.2),
    Template("hi_birthday", "मेरा जन्मदिन $month में है।", weight=0.6),
    Template("hi_likes", "मुझे $food बहुत पसंद है।"),
    Template("hi_phrase", "$phrase", weight=2.0),
]

_KN_NAMES = [("ರಾಮು", "m"), ("ರವಿ", "m"), ("ಮಂಜುನಾಥ", "m"), ("ಸುರೇಶ", "m"), ("ಕಿರಣ", "m"), ("ಪ್ರಕಾಶ", "m"),
             ("ಗಣೇಶ", "m"), ("ಮಹೇಶ", "m"), ("ಸೀತಾ", "f"), ("ಲಕ್ಷ್ಮಿ", "f"), ("ಗೀತಾ", "f"), ("ಕಾವ್ಯ", "f"),
             ("ಅನಿತಾ", "f"), ("ಶೋಭಾ", "f"), ("ರೇಖಾ", "f"), ("ಪೂಜಾ", "f")]
_KN_CITIES = ["ಬೆಂಗಳೂರು", "ಮೈಸೂರು", "ಮಂಗಳೂರು", "ಹುಬ್ಬಳ್ಳಿ", "ಬೆಳಗಾವಿ", "ಶಿವಮೊಗ್ಗ", "ತುಮಕೂರು", "ದಾವಣಗೆರೆ"]
_KN_OBJECTS = ["ಪುಸ್ತಕಗಳು", "ಪೆನ್ನುಗಳು", "ಕುರ್ಚಿಗಳು", "ಚೀಲಗಳು", "ಹಸುಗಳು", "ಮೇಕೆಗಳು", "ಕೋಳಿಗಳು", "ಹೂವುಗಳು"]
_KN_FOODS = ["ಅನ್ನ", "ಸಾರು", "ರಾಗಿ ಮುದ್ದೆ", "ದೋಸೆ", "ಇಡ್ಲಿ", "ಉಪ್ಪಿಟ್ಟು", "ಮೊಸರು", "ಹೋಳಿಗೆ"]
_KN_PHRASES = ["ನಮಸ್ಕಾರ, ಹೇಗಿದ್ದೀರಿ?", "ನಾನು ಚೆನ್ನಾಗಿದ್ದೇನೆ, ಧನ್ಯವಾದಗಳು.", "ನಿಮ್ಮ ಹೆಸರೇನು?",
               "ಹೊರಗೆ ಮಳೆ ಬರುತ್ತಿದೆ.", "ನನಗೆ ಹಸಿವಾಗಿದೆ.", "ದಯವಿಟ್ಟು ನಿಧಾನವಾಗಿ ಮಾತನಾಡಿ.", "ನಾಳೆ ಸಿಗೋಣ.",
               "ಇವತ್ತು ತುಂಬಾ ಬಿಸಿಲು.", "ಬಸ್ ಸ್ಟ್ಯಾಂಡ್ {bus stand} ಎಲ್ಲಿದೆ?"]
_KN_TEMPLATES = [
    Template("kn_name", "ನನ್ನ ಹೆಸರು $name."),
    Template("kn_today", "ಇಂದು $weekday.", weight=0.6),
    Template("kn_lives", "$name $city ನಗರದಲ್ಲಿ [ವಾಸಿಸುತ್ತಾನೆ|ವಾಸಿಸುತ್ತಾಳೆ].", weight=1.5),
    Template("kn_have", "ನನ್ನ ಬಳಿ $num $obj ಇವೆ.", weight=1.5),
    Template("kn_speaks", "$name $language [ಮಾತನಾಡುತ್ತಾನೆ|ಮಾತನಾಡುತ್ತಾಳೆ].", weight=1.2),
    Template("kn_birthday", "ನನ್ನ ಹುಟ್ಟುಹಬ್ಬ $month ತಿಂಗಳಲ್ಲಿ.", weight=0.6),
    Template("kn_country", "$name $month ತಿಂಗಳಲ್ಲಿ $country ದೇಶಕ್ಕೆ [ಹೋಗುತ್ತಾನೆ|ಹೋಗುತ್ತಾಳೆ].", weight=1.5),
    Template("kn_likes", "ನನಗೆ $food ತುಂಬಾ ಇಷ್ಟ."),
    Template("kn_phrase", "$phrase", weight=2.0),
]

_TA_NAMES = [("ராமு", None), ("முருகன்", None), ("ரவி", None), ("செல்வம்", None), ("கார்த்திக்", None),
             ("சீதா", None), ("லட்சுமி", None), ("கீதா", None), ("மீனா", None), ("பிரியா", None),
             ("அருண்", None), ("வள்ளி", None)]
_TA_CITIES = ["சென்னை", "மதுரை", "கோயம்புத்தூர்", "திருச்சி", "சேலம்", "திருநெல்வேலி", "வேலூர்", "ஈரோடு"]
_TA_OBJECTS = ["புத்தகங்கள்", "பேனாக்கள்", "நாற்காலிகள்", "பைகள்", "பசுக்கள்", "ஆடுகள்", "கோழிகள்", "பூக்கள்"]
_TA_FOODS = ["சாதம்", "சாம்பார்", "இட்லி", "தோசை", "பொங்கல்", "தயிர்", "வடை", "பாயசம்"]
_TA_NUMBERS = ["இரண்டு", "மூன்று", "நான்கு", "ஐந்து", "ஆறு", "ஏழு", "எட்டு", "ஒன்பது", "பத்து",
               "பதினொன்று", "பன்னிரண்டு", "பதிமூன்று", "பதினான்கு", "பதினைந்து", "பதினாறு", "பதினேழு",
               "பதினெட்டு", "பத்தொன்பது", "இருபது", "முப்பது", "நாற்பது", "ஐம்பது"]
_TA_PHRASES = ["வணக்கம், எப்படி இருக்கிறீர்கள்?", "நான் நன்றாக இருக்கிறேன், நன்றி.", "உங்கள் பெயர் என்ன?",
               "வெளியே மழை பெய்கிறது.", "எனக்கு பசிக்கிறது.", "தயவுசெய்து மெதுவாக பேசுங்கள்.",
               "நாளை சந்திப்போம்.", "இன்று மிகவும் வெயில்.", "பஸ் ஸ்டாண்ட் {bus stand} எங்கே இருக்கிறது?"]
_TA_TEMPLATES = [
    Template("ta_name", "என் பெயர் $name."),
    Template("ta_today", "இன்று $weekday.", weight=0.6),
    Template("ta_lives", "$name $city நகரில் வசிக்கிறார்.", weight=1.5),
    Template("ta_have", "என்னிடம் $num $obj உள்ளன.", weight=1.5),
    Template("ta_speaks", "$name $language பேசுவார்.", weight=1.2),
    Template("ta_birthday", "என் பிறந்தநாள் $month மாதத்தில்.", weight=0.6),
    Template("ta_country", "$name $month மாதத்தில் $country நாட்டுக்கு செல்வார்.", weight=1.5),
    Template("ta_likes", "எனக்கு $food மிகவும் பிடிக்கும்."),
    Template("ta_phrase", "$phrase", weight=2.0),
]

# CLDR subsets: well-known countries whose English name needs no article, and widely known languages.
_COUNTRIES = "IN JP CN FR DE AU CA RU LK NP BD SG IT BR KE EG TH MY ID NZ MX ES OM QA SA KW".split()
_LANGUAGES = "te hi en ta kn ml mr bn gu ur pa or sa fr de ja zh es ar ru".split()
# num2words spells a few Telugu numbers in rare ways; these are the common spellings.
_TE_NUMBER_FIXES = {14: "పద్నాలుగు", 15: "పదిహేను", 18: "పద్దెనిమిది"}


def _cldr_words(code: str) -> dict[str, list[Word]]:
    """Weekdays, months, countries and languages from CLDR, in ``code`` and English."""
    from babel import Locale

    loc, en = Locale.parse(code), Locale.parse("en")
    days = [Word(loc.days["format"]["wide"][i], en.days["format"]["wide"][i]) for i in range(7)]
    months = [Word(loc.months["format"]["wide"][i], en.months["format"]["wide"][i]) for i in range(1, 13)]
    countries = [Word(loc.territories[c], en.territories[c]) for c in _COUNTRIES]
    languages = [Word(loc.languages[c], en.languages[c]) for c in _LANGUAGES]
    # CLDR sometimes ends a name with a ZWNJ (e.g. Telugu "France"); it has no sound and would
    # break suffix attachment, so it is removed here and re-inserted by the suffix rule.
    def clean(words: list[Word]) -> list[Word]:
        return [Word(w.native.replace(_ZWNJ, ""), w.english) for w in words]

    return {"weekday": clean(days), "month": clean(months), "country": clean(countries),
            "language": clean(languages)}


def _numbers(language: str, lo: int, hi: int) -> list[Word]:
    """Number words lo..hi (inclusive) with English, via num2words or the hand-written tables."""
    from num2words import num2words

    code = language_code(language)
    table = {"hindi": _HI_NUMBERS, "tamil": _TA_NUMBERS}.get(language)
    words = []
    for n in range(lo, hi + 1):
        if table is not None:
            values = list(range(2, 21)) + [30, 40, 50]
            if n not in values:
                continue
            native = table[values.index(n)]
        elif language == "telugu" and n in _TE_NUMBER_FIXES:
            native = _TE_NUMBER_FIXES[n]
        else:
            native = " ".join(num2words(n, lang=code).split())
        words.append(Word(native, num2words(n, lang="en")))
    return words


@lru_cache(maxsize=None)
def lexicon(language: str) -> dict[str, tuple[Word, ...]]:
    """All slot categories for ``language``: category name -> words."""
    language = language.lower()
    if language not in SUPPORTED_LANGUAGES:
        raise ValueError(
            f"no sentence templates for {language!r}; supported: {', '.join(SUPPORTED_LANGUAGES)}"
        )
    cats: dict[str, list[Word]] = _cldr_words(language_code(language))
    if language == "telugu":
        cats["name"] = [Word(n, e, gender="m") for n, e in _TE_NAMES_M] + [
            Word(n, e, gender="f") for n, e in _TE_NAMES_F]
        cats["city"] = [Word(n, e) for n, e in _TE_CITIES]
        cats["obj"] = [Word(s, es, pl=p, pl_en=ep) for s, p, es, ep in _TE_OBJECTS]
        cats["item"] = cats["obj"] + [Word(s, es, pl=p, pl_en=ep) for s, p, es, ep in _TE_PRODUCE]
        cats["animal"] = [Word(s, es, pl=p, pl_en=ep) for s, p, es, ep in _TE_ANIMALS]
        cats["food"] = [Word(n, e) for n, e in _TE_FOODS]
        cats["drink"] = [Word(n, e, gloss=g) for n, e, g in _TE_DRINKS]
        cats["thing"] = [Word(n, e, gloss=e) for n, e in _TE_LOAN_THINGS]
        cats["place"] = [Word(n, e, gloss=e) for n, e in _TE_LOAN_PLACES]
        cats["people"] = [Word(n, e, gloss=g) for n, e, g in _TE_PEOPLE]
        cats["color"] = [Word(n, e) for n, e in _TE_COLORS]
        cats["phrase"] = [Word(n, e) for n, e in _TE_PHRASES]
        cats["num"] = _numbers(language, 2, 99)
        cats["small"] = _numbers(language, 2, 10)
        cats["hour"] = _numbers(language, 1, 12)
    else:
        names, cities, objects, foods, phrases = {
            "hindi": (_HI_NAMES, _HI_CITIES, _HI_OBJECTS, _HI_FOODS, _HI_PHRASES),
            "kannada": (_KN_NAMES, _KN_CITIES, _KN_OBJECTS, _KN_FOODS, _KN_PHRASES),
            "tamil": (_TA_NAMES, _TA_CITIES, _TA_OBJECTS, _TA_FOODS, _TA_PHRASES),
        }[language]
        cats["name"] = [Word(n, gender=g) for n, g in names]
        cats["city"] = [Word(c) for c in cities]
        cats["obj"] = [Word(o) for o in objects]
        cats["food"] = [Word(f) for f in foods]
        cats["phrase"] = [Word(p) for p in phrases]
        cats["num"] = _numbers(language, 2, 50 if language in ("hindi", "tamil") else 99)
        # Translations exist for Telugu only: drop the CLDR/num2words English so that nothing
        # downstream mistakes a word-level gloss for a sentence translation.
        cats = {k: [Word(w.native, None, w.gloss, w.gender, w.pl) for w in v] for k, v in cats.items()}
    return {k: tuple(v) for k, v in cats.items()}


def templates(language: str) -> tuple[Template, ...]:
    """The sentence templates of ``language``."""
    language = language.lower()
    table = {"telugu": _TE_TEMPLATES, "hindi": _HI_TEMPLATES, "kannada": _KN_TEMPLATES, "tamil": _TA_TEMPLATES}
    if language not in table:
        raise ValueError(
            f"no sentence templates for {language!r}; supported: {', '.join(SUPPORTED_LANGUAGES)}"
        )
    return tuple(table[language])


@lru_cache(maxsize=None)
def vocabulary(language: str) -> frozenset[str]:
    """Every native-script word (normalised) that sentences of ``language`` can contain.

    Template frame words plus each slot category's words in the forms the templates use (plural,
    Telugu locative/dative): the closed vocabulary an ASR model trained on the corpus must learn.
    """
    language = language.lower()
    cats = lexicon(language)
    words: set[str] = set()
    for t in templates(language):
        frame = _CHOICE_RE.sub(lambda m: f"{m.group(1)} {m.group(2)}", t.native)
        words.update(normalize(_SLOT_RE.sub(" ", frame)).split())
        for match in _SLOT_RE.finditer(t.native):
            form = match.group(3)
            for w in cats[match.group(1)]:
                words.update(normalize(_form(w, form)).split())
    return frozenset(words)


def _form(word: Word, form: str | None) -> str:
    """The native text of ``word`` in a template form (plural, Telugu locative/dative, or as is)."""
    if form == "pl":
        return word.pl or word.native
    if form in ("loc", "dat"):
        return _telugu_suffix(word.native, form)
    return word.native


# ----------------------------------------------------------------------------- rendering templates

_SLOT_RE = re.compile(r"\$([a-z]+)(\d*)(?:\.([a-z]+))?")
_CHOICE_RE = re.compile(r"\[([^|\]]*)\|([^\]]*)\]")


def _telugu_suffix(word: str, form: str) -> str:
    """Attach the Telugu locative (లో) or dative (కు/కి/ానికి) to a noun."""
    if form == "loc":
        suffix = "లో"
    elif word.endswith("ం"):  # -am nouns: విశాఖపట్నం -> విశాఖపట్నానికి
        return word[:-1] + "ానికి"
    elif word[-1] in "ిీెేై":  # front-vowel endings take -కి: ఢిల్లీకి, రవికి
        suffix = "కి"
    else:
        suffix = "కు"
    # After a virama Telugu writes a ZWNJ so the suffix does not fuse into a conjunct (హైదరాబాద్‌లో);
    # normalisation removes it from the ASR text, as it does for real Vaani transcripts.
    joiner = _ZWNJ if word.endswith(_VIRAMA["telugu"]) else ""
    return word + joiner + suffix


def _render(template: Template, language: str, rng: random.Random) -> Sentence:
    cats = lexicon(language)
    chosen: dict[str, Word] = {}
    gender: str | None = None

    def pick(match: re.Match) -> Word:
        nonlocal gender
        key = match.group(1) + match.group(2)
        if key not in chosen:
            category = cats.get(match.group(1))
            if not category:
                raise KeyError(f"template {template.id} uses unknown slot category {match.group(1)!r}")
            chosen[key] = rng.choice(category)
            if gender is None and chosen[key].gender:
                gender = chosen[key].gender
        return chosen[key]

    def native_token(token: str) -> str:
        glosses: list[str] = []

        def fill(match: re.Match) -> str:
            word, form = pick(match), match.group(3)
            if word.gloss:
                glosses.append(word.gloss)
            if form == "pl":
                return word.pl or word.native
            if form in ("loc", "dat"):
                if language != "telugu":
                    raise ValueError(f"template {template.id}: form .{form} exists for Telugu only")
                return _telugu_suffix(word.native, form)
            return word.native

        filled = _SLOT_RE.sub(fill, token)
        if not glosses:
            return filled
        # Vaani puts the English after the word: "హాస్పిటల్‌కు {hospital}." (punctuation stays last).
        body = filled.rstrip(".,?!।")
        return body + "".join(f" {{{g}}}" for g in glosses) + filled[len(body):]

    raw = " ".join(native_token(tok) for tok in template.native.split(" "))
    translation = None
    if template.english is not None and language in TRANSLATED_LANGUAGES:
        def fill_en(match: re.Match) -> str:
            word, form = pick(match), match.group(3)
            if word.english is None:
                raise ValueError(f"template {template.id}: word {word.native!r} has no English")
            if form == "pl":
                return word.pl_en or word.english
            return word.english

        translation = _SLOT_RE.sub(fill_en, template.english)
        translation = translation[:1].upper() + translation[1:]

    def choose(match: re.Match) -> str:
        return match.group(2) if gender == "f" else match.group(1)

    raw = _CHOICE_RE.sub(choose, raw)
    return Sentence(
        language=language,
        raw=raw,
        text=normalize(raw),
        spoken=strip_annotations(raw).replace(_ZWNJ, ""),
        translation=translation,
        template=template.id,
        values=tuple((_SLOT_RE.fullmatch("$" + key).group(1), w.native) for key, w in chosen.items()),
    )


def _sentence(language: str, key: str) -> Sentence:
    table = templates(language)
    # A string seed is hashed with SHA-512 by `random`, so this is stable across runs and machines
    # (unlike hash()), and each key is independent of every other.
    rng = random.Random(key)
    template = rng.choices(table, weights=[t.weight for t in table], k=1)[0]
    return _render(template, language, rng)


def sentence_at(language: str, index: int, seed: int = 0) -> Sentence:
    """The ``index``-th sentence of the stream for (``language``, ``seed``), whatever its partition."""
    language = language.lower()
    return _sentence(language, f"sentences/{language}/{seed}/{index}")


# ----------------------------------------------------------------------------- held-out partition

PARTITIONS = ("train", "heldout")
# Share of each slot list held out of train entirely, and of the remaining sentences (over seen values
# only) held out by a hash of their text.  With 2-3 slots a template sentence then lands in the held-out
# partition about half the time, so walking the stream for either partition stays cheap.
HELDOUT_VALUE_FRACTION = 0.2
HELDOUT_HASH_FRACTION = 0.12
# Categories whose entries are whole sentences: the hash bucket alone splits them.
_WHOLE_SENTENCE_CATEGORIES = frozenset({"phrase"})


@lru_cache(maxsize=None)
def heldout_values(language: str, seed: int = 0) -> dict[str, frozenset[str]]:
    """Category -> the native slot values held out of train for (``language``, ``seed``).

    About :data:`HELDOUT_VALUE_FRACTION` of each slot list (at least one value), drawn with a seeded
    generator.  Categories that share words (Telugu ``obj`` inside ``item``; numbers in ``num``,
    ``small`` and ``hour``) share the decision: a word held out in one is held out in all, so it
    never reaches train through another slot.
    """
    language = language.lower()
    cats = lexicon(language)
    held: set[str] = set()
    for name in sorted(cats):
        if name in _WHOLE_SENTENCE_CATEGORIES:
            continue
        words = sorted({w.native for w in cats[name]})
        k = max(1, round(HELDOUT_VALUE_FRACTION * len(words)))
        held.update(random.Random(f"heldout/{language}/{seed}/{name}").sample(words, k))
    return {name: frozenset(w.native for w in cats[name] if w.native in held)
            for name in sorted(cats) if name not in _WHOLE_SENTENCE_CATEGORIES}


def _hash_bucket(language: str, seed: int, text: str) -> float:
    """A stable number in [0, 1) for a sentence text (crc32, so identical on every machine and run)."""
    return zlib.crc32(f"{language}/{seed}/{text}".encode()) / 2**32


def partition_of(sentence: Sentence, seed: int = 0) -> str:
    """``"heldout"`` when ``sentence`` uses a held-out slot value or its text hashes into the held-out
    bucket, else ``"train"``.  Depends on the sentence's text and values only, so the same sentence
    text is in the same partition wherever it was drawn (dev/test sentences can never occur in train)."""
    held = heldout_values(sentence.language, seed)
    if any(word in held.get(cat, ()) for cat, word in sentence.values):
        return "heldout"
    return "heldout" if _hash_bucket(sentence.language, seed, sentence.text) < HELDOUT_HASH_FRACTION else "train"


def sentence_for(language: str, index: int, seed: int = 0, partition: str = "train") -> Sentence:
    """The ``index``-th sentence of ``partition`` for (``language``, ``seed``).

    Tries ``sentence_at(language, index, seed)`` first, then further draws keyed by (index, attempt)
    until one falls in ``partition``: a pure function of its arguments, independent of other indices.
    """
    if partition not in PARTITIONS:
        raise ValueError(f"partition must be one of {PARTITIONS}, got {partition!r}")
    language = language.lower()
    for attempt in range(1000):
        key = f"sentences/{language}/{seed}/{index}" + (f"/{attempt}" if attempt else "")
        sent = _sentence(language, key)
        if partition_of(sent, seed) == partition:
            return sent
    raise RuntimeError(f"no {partition} sentence for {language} index {index} in 1000 draws")


@lru_cache(maxsize=None)
def heldout_tokens(language: str, seed: int = 0) -> frozenset[str]:
    """Normalised words that only held-out slot values produce (in any form a template uses).

    Words a kept value, a template's frame or a fixed phrase can also produce are left out (e.g. the
    number word inside a compound number), so none of these may occur in a train transcript.
    """
    language = language.lower()
    held = {w for ws in heldout_values(language, seed).values() for w in ws}
    cats = lexicon(language)
    held_words: set[str] = set()
    other_words: set[str] = set()
    for t in templates(language):
        frame = _CHOICE_RE.sub(lambda m: f"{m.group(1)} {m.group(2)}", t.native)
        other_words.update(normalize(_SLOT_RE.sub(" ", frame)).split())
        for match in _SLOT_RE.finditer(t.native):
            for w in cats[match.group(1)]:
                words = normalize(_form(w, match.group(3))).split()
                if match.group(1) in _WHOLE_SENTENCE_CATEGORIES or w.native not in held:
                    other_words.update(words)
                else:
                    held_words.update(words)
    return frozenset(held_words - other_words)


def generate_sentences(language: str, n: int, seed: int = 0, start: int = 0) -> list[Sentence]:
    """``n`` sentences of ``language`` (indices ``start`` .. ``start + n - 1``) for ``seed``."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    return [sentence_at(language, i, seed) for i in range(start, start + n)]
