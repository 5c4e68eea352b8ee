// myrback: the MyriXen backend (the emulated driver domain of one host). The command itself
// lives in the library (BackendCommand), which swiftrun also runs in the backends it forks.
import MyriXen
#if canImport(Glibc)
import Glibc
#endif

exit(BackendCommand.main(CommandLine.arguments.dropFirst()))
