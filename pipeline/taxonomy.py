"""Amazon Rekognition's moderation taxonomy, version 7 (three levels).

Used to find the top-level category of any label, whatever level the detector reported, so that
``PIPELINE_BLOCK_CATEGORIES`` can name top-level categories only.
"""

from __future__ import annotations

#: name -> parent name ("" for a top-level category).
PARENTS: dict[str, str] = {
    # Level 1
    "Explicit": "",
    "Non-Explicit Nudity of Intimate parts and Kissing": "",
    "Swimwear or Underwear": "",
    "Violence": "",
    "Visually Disturbing": "",
    "Drugs & Tobacco": "",
    "Alcohol": "",
    "Rude Gestures": "",
    "Gambling": "",
    "Hate Symbols": "",
    # Level 2
    "Explicit Nudity": "Explicit",
    "Explicit Sexual Activity": "Explicit",
    "Sex Toys": "Explicit",
    "Non-Explicit Nudity": "Non-Explicit Nudity of Intimate parts and Kissing",
    "Obstructed Intimate Parts": "Non-Explicit Nudity of Intimate parts and Kissing",
    "Kissing on the Lips": "Non-Explicit Nudity of Intimate parts and Kissing",
    "Female Swimwear or Underwear": "Swimwear or Underwear",
    "Male Swimwear or Underwear": "Swimwear or Underwear",
    "Weapons": "Violence",
    "Graphic Violence": "Violence",
    "Death and Emaciation": "Visually Disturbing",
    "Crashes": "Visually Disturbing",
    "Products": "Drugs & Tobacco",
    "Drugs & Tobacco Paraphernalia & Use": "Drugs & Tobacco",
    "Alcohol Use": "Alcohol",
    "Alcoholic Beverages": "Alcohol",
    "Middle Finger": "Rude Gestures",
    "Nazi Party": "Hate Symbols",
    "White Supremacy": "Hate Symbols",
    "Extremist": "Hate Symbols",
    # Level 3
    "Exposed Male Genitalia": "Explicit Nudity",
    "Exposed Female Genitalia": "Explicit Nudity",
    "Exposed Buttocks or Anus": "Explicit Nudity",
    "Exposed Female Nipple": "Explicit Nudity",
    "Bare Back": "Non-Explicit Nudity",
    "Exposed Male Nipple": "Non-Explicit Nudity",
    "Partially Exposed Buttocks": "Non-Explicit Nudity",
    "Partially Exposed Female Breast": "Non-Explicit Nudity",
    "Implied Nudity": "Non-Explicit Nudity",
    "Obstructed Female Nipple": "Obstructed Intimate Parts",
    "Obstructed Male Genitalia": "Obstructed Intimate Parts",
    "Weapon Violence": "Graphic Violence",
    "Physical Violence": "Graphic Violence",
    "Self-Harm": "Graphic Violence",
    "Blood & Gore": "Graphic Violence",
    "Explosions and Blasts": "Graphic Violence",
    "Emaciated Bodies": "Death and Emaciation",
    "Corpses": "Death and Emaciation",
    "Air Crash": "Crashes",
    "Pills": "Products",
    "Smoking": "Drugs & Tobacco Paraphernalia & Use",
    "Drinking": "Alcohol Use",
}

TOP_LEVEL = tuple(name for name, parent in PARENTS.items() if not parent)


def level(name: str) -> int:
    """The taxonomy level (1-3) of a known label; 0 when unknown."""
    depth, current = 0, name
    while current in PARENTS:
        depth += 1
        current = PARENTS[current]
        if not current:
            return depth
    return 0


def top_level(name: str, parent_name: str = "") -> str:
    """The level-1 category of a label; labels outside the taxonomy fall back to their parent."""
    current = name if name in PARENTS else parent_name
    while PARENTS.get(current):
        current = PARENTS[current]
    return current or parent_name or name
