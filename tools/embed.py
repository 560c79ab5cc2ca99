#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
# tools/embed.py -- turn a text file into a C header holding it as one string constant, so the
# library ships share/audit/verify.sh inside every extract without reading the source tree.
# Usage: embed.py INPUT OUTPUT NAME
import sys

src, dst, name = sys.argv[1], sys.argv[2], sys.argv[3]
data = open(src, 'rb').read()
with open(dst, 'w') as f:
    f.write('/* generated from %s by tools/embed.py; do not edit */\n' % src.split('/')[-1])
    f.write('static const unsigned char %s[] = {\n' % name)
    for i in range(0, len(data), 16):
        f.write('    ' + ', '.join('0x%02x' % b for b in data[i:i + 16]) + ',\n')
    f.write('};\n')
    f.write('#define %s_LEN %d\n' % (name.upper(), len(data)))
