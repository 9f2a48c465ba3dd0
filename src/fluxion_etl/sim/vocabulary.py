"""Words the simulator builds its catalogue and chain from (Venezuelan grocery, KLK's spelling).

Plain data, kept apart from the generators so they read as logic. Each subcategory says how its
articles are sold (``KG`` = weighed), their tax rate, a price range in US cents and their nouns.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Subcategory:
    name: str
    nouns: tuple[str, ...]
    weighed: bool
    tax: int
    price_cents: tuple[int, int]
    branded: bool = True


@dataclass(frozen=True, slots=True)
class Department:
    code: str
    name: str
    subcategories: tuple[Subcategory, ...]
    brands: tuple[str, ...]


SIZES_UNIT = ("1KG", "500G", "900G", "250G", "1L", "2L", "400G", "200G", "150G", "750ML", "1.5L")
SIZE_GRAMS = {
    "1KG": 1000,
    "500G": 500,
    "900G": 900,
    "250G": 250,
    "1L": 1000,
    "2L": 2000,
    "400G": 400,
    "200G": 200,
    "150G": 150,
    "750ML": 750,
    "1.5L": 1500,
}
VARIANTS = (
    "",
    "CLASICO",
    "LIGHT",
    "PREMIUM",
    "FAMILIAR",
    "ORIGINAL",
    "INTEGRAL",
    "EXTRA",
    "TRADICIONAL",
    "ECONOMICO",
    "SUAVE",
    "DOBLE",
    "NATURAL",
    "ESPECIAL",
)

DEPARTMENTS: tuple[Department, ...] = (
    Department(
        "01",
        "VIVERES",
        (
            Subcategory(
                "HARINAS",
                ("HARINA DE MAIZ PRECOCIDA", "HARINA DE TRIGO", "AVENA"),
                False,
                0,
                (90, 260),
            ),
            Subcategory("ARROZ", ("ARROZ BLANCO", "ARROZ PARBOILED"), False, 0, (110, 240)),
            Subcategory(
                "PASTAS", ("PASTA LARGA", "PASTA CORTA", "PASTA PLUMITA"), False, 0, (80, 220)
            ),
            Subcategory(
                "ACEITES",
                ("ACEITE DE SOYA", "ACEITE DE MAIZ", "ACEITE MIXTO"),
                False,
                16,
                (300, 700),
            ),
            Subcategory(
                "GRANOS",
                ("CARAOTAS NEGRAS", "LENTEJAS", "ARVEJAS", "FRIJOLES"),
                False,
                0,
                (120, 300),
            ),
            Subcategory("CAFE", ("CAFE MOLIDO", "CAFE EN GRANO"), False, 16, (250, 900)),
            Subcategory(
                "AZUCAR", ("AZUCAR REFINADA", "AZUCAR MORENA", "PAPELON"), False, 0, (100, 250)
            ),
            Subcategory(
                "ENLATADOS",
                ("ATUN EN ACEITE", "SARDINAS", "MAIZ DULCE", "DIABLITOS"),
                False,
                16,
                (120, 450),
            ),
            Subcategory(
                "SALSAS",
                ("SALSA DE TOMATE", "MAYONESA", "MOSTAZA", "SALSA INGLESA"),
                False,
                16,
                (150, 500),
            ),
        ),
        (
            "DOÑA ARE",
            "MARY",
            "PRIMOR",
            "CAPRI",
            "VATEL",
            "FAMA DE AMERICA",
            "LA GARZA",
            "IBERIA",
            "PAMPERO",
            "MAVESA",
            "MONTALBAN",
            "EL CHICHO",
        ),
    ),
    Department(
        "03",
        "LIMPIEZA",
        (
            Subcategory("JABONES", ("JABON EN PANELA", "JABON LIQUIDO"), False, 16, (80, 450)),
            Subcategory(
                "DETERGENTES", ("DETERGENTE EN POLVO", "DETERGENTE LIQUIDO"), False, 16, (200, 1200)
            ),
            Subcategory(
                "DESINFECTANTES",
                ("CLORO", "DESINFECTANTE", "LIMPIADOR MULTIUSO"),
                False,
                16,
                (100, 500),
            ),
            Subcategory(
                "PAPEL",
                ("PAPEL HIGIENICO", "SERVILLETAS", "TOALLAS DE COCINA"),
                False,
                16,
                (120, 900),
            ),
        ),
        ("LAS LLAVES", "ACE", "ARIEL", "LAVANSAN", "NEVEX", "ROSAL", "SUAVEX", "OLIMPIA"),
    ),
    Department(
        "04",
        "BEBIDAS",
        (
            Subcategory(
                "REFRESCOS",
                ("REFRESCO COLA", "REFRESCO NARANJA", "MALTA", "REFRESCO LIMON"),
                False,
                16,
                (60, 300),
            ),
            Subcategory(
                "JUGOS",
                ("JUGO DE DURAZNO", "JUGO DE NARANJA", "NECTAR DE PERA"),
                False,
                16,
                (90, 350),
            ),
            Subcategory("AGUAS", ("AGUA MINERAL", "AGUA SABORIZADA"), False, 16, (40, 160)),
            Subcategory(
                "LICORES", ("RON AÑEJO", "CERVEZA", "VINO TINTO", "SANGRIA"), False, 16, (150, 2500)
            ),
        ),
        ("POLAR", "PEPSI", "GLUP", "YUKERY", "MINALBA", "SANTA TERESA", "CACIQUE", "FRICA"),
    ),
    Department(
        "05",
        "CHARCUTERIA",
        (
            Subcategory(
                "QUESOS",
                ("QUESO BLANCO DURO", "QUESO AMARILLO", "QUESO GUAYANES", "QUESO DE MANO"),
                True,
                16,
                (550, 1100),
                False,
            ),
            Subcategory(
                "EMBUTIDOS",
                ("JAMON DE PIERNA", "MORTADELA", "SALCHICHON", "CHORIZO"),
                True,
                16,
                (450, 1300),
            ),
        ),
        ("PLUMROSE", "ALIVE", "CIENFUEGOS", "FRICA", "LA CAMPIÑA"),
    ),
    Department(
        "06",
        "CARNES",
        (
            Subcategory(
                "RES",
                ("CARNE MOLIDA", "BISTEC DE RES", "COSTILLA DE RES", "MUCHACHO REDONDO"),
                True,
                0,
                (550, 1200),
                False,
            ),
            Subcategory(
                "AVES",
                ("POLLO ENTERO", "MUSLO DE POLLO", "PECHUGA DE POLLO"),
                True,
                0,
                (300, 750),
                False,
            ),
            Subcategory(
                "CERDO", ("CHULETA DE CERDO", "PERNIL", "TOCINETA"), True, 0, (500, 1100), False
            ),
        ),
        (),
    ),
    Department(
        "07",
        "LACTEOS",
        (
            Subcategory(
                "LECHES",
                ("LECHE COMPLETA", "LECHE EN POLVO", "LECHE DESCREMADA"),
                False,
                0,
                (150, 1200),
            ),
            Subcategory(
                "YOGURES",
                ("YOGURT FRESA", "YOGURT NATURAL", "BEBIDA LACTEA"),
                False,
                16,
                (120, 400),
            ),
            Subcategory("MANTEQUILLAS", ("MANTEQUILLA", "MARGARINA"), False, 16, (200, 600)),
        ),
        ("LA PRADERA", "NATULAC", "TODDY", "MIGURT", "CAMPESTRE", "ALPINA"),
    ),
    Department(
        "08",
        "FRUVER",
        (
            Subcategory(
                "HORTALIZAS",
                ("TOMATE PERITA", "CEBOLLA BLANCA", "PIMENTON", "ZANAHORIA", "PAPA"),
                True,
                0,
                (60, 250),
                False,
            ),
            Subcategory(
                "FRUTAS",
                ("CAMBUR", "PATILLA", "NARANJA", "MANGO", "LECHOSA", "PIÑA"),
                True,
                0,
                (50, 300),
                False,
            ),
            Subcategory(
                "VERDURAS", ("AUYAMA", "YUCA", "OCUMO", "PLATANO"), True, 0, (40, 200), False
            ),
        ),
        (),
    ),
    Department(
        "09",
        "CUIDADO PERSONAL",
        (
            Subcategory(
                "HIGIENE",
                ("CREMA DENTAL", "DESODORANTE", "CHAMPU", "JABON DE TOCADOR"),
                False,
                16,
                (150, 900),
            ),
            Subcategory(
                "BEBES", ("PAÑALES", "TOALLITAS HUMEDAS", "COMPOTA"), False, 16, (100, 1800)
            ),
        ),
        ("COLGATE", "PROTEX", "HEAD & SHOULDERS", "PAMPERS", "HUGGIES", "GERBER", "REXONA"),
    ),
    Department(
        "10",
        "PANADERIA",
        (
            Subcategory(
                "PANES",
                ("PAN CAMPESINO", "PAN DE SANDWICH", "CANILLA", "PAN DULCE"),
                False,
                0,
                (80, 350),
            ),
            Subcategory(
                "GALLETAS",
                ("GALLETAS DE SODA", "GALLETAS MARIA", "GALLETAS RELLENAS"),
                False,
                16,
                (60, 300),
            ),
        ),
        ("BIMBO", "PUIG", "NESTLE", "RIKESA", "GUARANI"),
    ),
)

PLACE_NAMES = (
    "LOS GUAYOS",
    "MARIARA",
    "SAN JOAQUIN",
    "BEJUMA",
    "MONTALBAN",
    "MORON",
    "PUERTO CABELLO",
    "TINAQUILLO",
    "MARACAY",
    "LA VICTORIA",
    "CAGUA",
    "TURMERO",
    "VALENCIA NORTE",
    "SAN CARLOS",
    "ACARIGUA",
    "BARQUISIMETO",
    "CABUDARE",
    "SAN FELIPE",
    "YARITAGUA",
    "CARORA",
    "EL TOCUYO",
    "PUERTO AYACUCHO",
    "CORO",
    "PUNTO FIJO",
    "LOS TEQUES",
    "CHARALLAVE",
    "GUARENAS",
    "GUATIRE",
)
